# ModelCluster developer commands. Everything runs inside .venv, created by uv from uv.lock.
SHELL := /bin/bash
UV_VERSION := 0.13.9
PYTHON ?= python3
# uv from PATH, else the module of the same name (what `pip install --user uv` provides).
UV := $(shell command -v uv 2>/dev/null)
ifeq ($(UV),)
UV := $(PYTHON) -m uv
endif
VENV := .venv
STAMP := $(VENV)/.synced
POD_COMMANDS := e2e/pod-commands.yaml
export UV_PYTHON_DOWNLOADS := never
# Trust the system certificate store (where a proxy's CA is installed), as pip does.
export UV_SYSTEM_CERTS := 1

.PHONY: help venv prebuild test test-unit test-integration lint format dev cluster-up cluster-down cluster-build crd

help:
	@echo "make dev           the whole system locally: control plane and operator"
	@echo "make test          every test tier (starts a local control plane unless KUBECONFIG is set)"
	@echo "make lint          ruff and mypy"
	@echo "make cluster-up    start the local control plane and print its KUBECONFIG line"
	@echo "make cluster-down  stop it"

$(STAMP): pyproject.toml uv.lock
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --user --quiet uv==$(UV_VERSION)
	$(UV) sync --frozen --all-extras --python 3.11
	@touch $@

venv: $(STAMP)

# The first build of the control plane takes minutes: do it (with progress lines) before
# pytest, whose per-test timeout would otherwise count it against the first cluster test.
prebuild: $(STAMP)
	@if [ -z "$$KUBECONFIG" ]; then $(UV) run --frozen --no-sync modelcluster cluster build; fi

test: prebuild
	$(UV) run --frozen --no-sync pytest

test-unit: $(STAMP)
	$(UV) run --frozen --no-sync pytest tests/unit

test-integration: prebuild
	$(UV) run --frozen --no-sync pytest tests/integration

lint: $(STAMP)
	$(UV) run --frozen --no-sync ruff check .
	$(UV) run --frozen --no-sync ruff format --check .
	$(UV) run --frozen --no-sync mypy

format: $(STAMP)
	$(UV) run --frozen --no-sync ruff format .
	$(UV) run --frozen --no-sync ruff check --fix .

cluster-build: $(STAMP)
	$(UV) run --frozen --no-sync modelcluster cluster build

cluster-up: $(STAMP)
	@$(UV) run --frozen --no-sync modelcluster cluster up --pod-commands $(POD_COMMANDS)

cluster-down: $(STAMP)
	@$(UV) run --frozen --no-sync modelcluster cluster down

dev: $(STAMP)
	$(UV) run --frozen --no-sync modelcluster dev --pod-commands $(POD_COMMANDS)
