# ModelCluster developer commands. Everything runs inside .venv, created by uv from uv.lock.
# Works with or without an activated virtual environment (uv and its bootstrap never use the venv's python).
SHELL := /bin/bash
UV_VERSION := 0.13.9
empty :=
space := $(empty) $(empty)
# PATH without an activated virtual environment's bin directory, and the python3 found there.
SYSTEM_PATH := $(subst $(space),:,$(filter-out $(VIRTUAL_ENV)/bin,$(subst :,$(space),$(PATH))))
SYSTEM_PYTHON ?= $(shell PATH="$(SYSTEM_PATH)" command -v python3 2>/dev/null)
# uv: from PATH, else ~/.local/bin/uv (or the user base of the system python, where `pip install --user` puts it).
# Recursive (=): evaluated again after the bootstrap below has installed it.
UV = $(or $(shell command -v uv 2>/dev/null),$(wildcard $(HOME)/.local/bin/uv),$(wildcard $(USER_BASE_UV)),uv)
USER_BASE_UV = $(shell $(SYSTEM_PYTHON) -m site --user-base 2>/dev/null)/bin/uv
VENV := .venv
STAMP := $(VENV)/.synced
POD_COMMANDS := e2e/pod-commands.yaml
# `make images`: where the images go and for which platform (PUSH=1 pushes instead of loading into docker).
REGISTRY ?= ghcr.io/modelcluster
IMAGE_VERSION ?= 0.1.0
PLATFORM ?= linux/amd64
PUSH ?=
# Model image families to build (text llm vision audio diffusion); empty: all.
FAMILIES ?=
export UV_PYTHON_DOWNLOADS := never
# Trust the system certificate store (where a proxy's CA is installed), as pip does.
export UV_SYSTEM_CERTS := 1

.PHONY: help venv uv host-tools postgres-tools prebuild test test-images test-unit test-integration lint format dev cluster-up \
	cluster-down cluster-build crd images image-tools helm-lint bench-tools

help:
	@echo "make dev           the whole system locally: control plane, operator, gateway and model pods"
	@echo "make test          every test tier (starts a local control plane unless KUBECONFIG is set)"
	@echo "make test-images   the image tier: make images, then the images run by runc in a local cluster"
	@echo "make test-unit     unit tests only (no cluster)"
	@echo "make lint          ruff, mypy and the import contracts (import-linter)"
	@echo "make format        ruff format and fixes"
	@echo "make cluster-up    start the local control plane and print its KUBECONFIG line"
	@echo "make cluster-down  stop it"
	@echo "make cluster-build build the control plane's binaries (done by cluster-up when missing)"
	@echo "make crd           regenerate crds/ and the Helm chart's copy from src/modelcluster/api"
	@echo "make helm-lint     helm lint the chart (helm comes from the project's tools)"
	@echo "make bench-tools   the benchmarks' load generators (vegeta, hey), built once into the cache"
	@echo "make images        build the control-plane and model images (docker, else buildah; REGISTRY, IMAGE_VERSION, FAMILIES, PUSH=1)"

# uv itself: installed with the system python (never the venv's, which has no pip module for it) when missing.
uv:
	@if ! command -v "$(UV)" >/dev/null 2>&1; then \
		if [ -z "$(SYSTEM_PYTHON)" ]; then echo "no uv and no python3 outside the virtual environment: install uv" >&2; exit 1; fi; \
		echo "installing uv $(UV_VERSION) with $(SYSTEM_PYTHON) -m pip install --user" >&2; \
		$(SYSTEM_PYTHON) -m pip install --user --quiet uv==$(UV_VERSION) \
			|| $(SYSTEM_PYTHON) -m pip install --user --quiet --break-system-packages uv==$(UV_VERSION); \
	fi

# The local cluster's egress guard needs nftables and iproute2 (Debian packages), installed once when missing.
host-tools:
	@if ! command -v nft >/dev/null 2>&1 || ! command -v ip >/dev/null 2>&1; then \
		if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
			echo "installing nftables and iproute2 with apt-get (the local cluster's egress guard)" >&2; \
			DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nftables iproute2 >/dev/null \
				|| { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nftables iproute2 >/dev/null; }; \
		else \
			echo "the local cluster needs nft (nftables) and ip (iproute2): install them as root" >&2; exit 1; \
		fi; \
	fi

# The ledger's tests run a real PostgreSQL server (Debian's postgresql: initdb and pg_ctl), installed once when missing.
postgres-tools:
	@if ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then \
		if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
			echo "installing postgresql with apt-get (the usage ledger's tests start a server)" >&2; \
			DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null \
				|| { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; }; \
		else \
			echo "the ledger's tests need PostgreSQL's server binaries (Debian package postgresql): install them as root" >&2; exit 1; \
		fi; \
	fi

$(STAMP): pyproject.toml uv.lock | uv
	$(UV) sync --frozen --all-extras --python 3.11
	@touch $@

venv: $(STAMP)

# The first build of the control plane takes minutes: do it (with progress lines) before
# pytest, whose per-test timeout would otherwise count it against the first cluster test.
prebuild: $(STAMP) host-tools postgres-tools
	@if [ -z "$$KUBECONFIG" ]; then $(UV) run --frozen --no-sync modelcluster cluster build; fi

# The load generators of benchmarks/gateway_overhead.py (vegeta, hey: go install into the cache), installed before
# pytest: its smoke run is under the test session's egress guard, which refuses the Go module proxy.
bench-tools: $(STAMP)
	$(UV) run --frozen --no-sync python benchmarks/gateway_overhead.py --install-tools

# The image tier (tests/images) has its own target: it builds images and runs them with runc.
test: prebuild bench-tools
	$(UV) run --frozen --no-sync pytest --ignore=tests/images

# The images built from their Dockerfiles (make images, cached) and run by runc on a local cluster of their own.
test-images: prebuild image-tools
	$(UV) run --frozen --no-sync modelcluster images build --family text
	MODELCLUSTER_TEST_IMAGES=1 MODELCLUSTER_TEST_CLUSTER=$${MODELCLUSTER_TEST_CLUSTER:-images} \
		$(UV) run --frozen --no-sync pytest tests/images

test-unit: $(STAMP) host-tools postgres-tools
	$(UV) run --frozen --no-sync pytest tests/unit

test-integration: prebuild
	$(UV) run --frozen --no-sync pytest tests/integration

lint: $(STAMP)
	$(UV) run --frozen --no-sync ruff check .
	$(UV) run --frozen --no-sync ruff format --check .
	$(UV) run --frozen --no-sync mypy
	$(UV) run --frozen --no-sync lint-imports

format: $(STAMP)
	$(UV) run --frozen --no-sync ruff format .
	$(UV) run --frozen --no-sync ruff check --fix .

cluster-build: $(STAMP)
	$(UV) run --frozen --no-sync modelcluster cluster build

cluster-up: $(STAMP) host-tools
	@$(UV) run --frozen --no-sync modelcluster cluster up --pod-commands $(POD_COMMANDS)

cluster-down: $(STAMP)
	@$(UV) run --frozen --no-sync modelcluster cluster down

dev: $(STAMP) host-tools
	$(UV) run --frozen --no-sync modelcluster dev --pod-commands $(POD_COMMANDS)

crd: $(STAMP)
	$(UV) run --frozen --no-sync modelcluster crd

helm-lint: $(STAMP)
	@helm=$$($(UV) run --frozen --no-sync python -c \
		'from modelcluster.devcluster.tools import ensure_tools; print(ensure_tools().helm)') \
		&& $$helm lint --strict charts/modelcluster

# Docker (buildx) where its daemon answers; elsewhere buildah, runc and mmdebstrap (Debian packages, installed once
# when missing) build the same Dockerfiles on bases made from Debian packages. See model-images/README.md.
image-tools:
	@if ! docker info >/dev/null 2>&1; then \
		missing=$$(for tool in buildah runc mmdebstrap; do command -v $$tool >/dev/null 2>&1 || echo $$tool; done); \
		if [ -n "$$missing" ]; then \
			if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
				echo "installing" $$missing "with apt-get (images without a Docker daemon)" >&2; \
				DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null \
					|| { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; }; \
			else \
				echo "make images needs a Docker daemon, or buildah, runc and mmdebstrap: install" $$missing "as root" >&2; \
				exit 1; \
			fi; \
		fi; \
	fi

images: $(STAMP) image-tools
	$(UV) run --frozen --no-sync modelcluster images build --registry $(REGISTRY) --version $(IMAGE_VERSION) \
		--platform $(PLATFORM) $(if $(PUSH),--push) $(foreach family,$(FAMILIES),--family $(family))
