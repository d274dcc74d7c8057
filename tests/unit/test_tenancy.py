"""Which namespaces may be tenants: the one rule, the keys CLI that applies it, the gateway that enforces it."""

from __future__ import annotations

import base64
import logging
from typing import Any, cast

import click
import pytest

from modelcluster.api import labels
from modelcluster.gateway import keys_cli
from modelcluster.gateway.keys import (
    ApiKeyRecord,
    InvalidKeySecret,
    InvalidTenant,
    build_key_secret,
    generate_key,
    validate_tenant,
    validate_tenant_name,
)
from modelcluster.gateway.keystore import KeyStore
from modelcluster.gateway.tenancy import (
    TENANT_LABEL,
    is_tenant_namespace,
    name_refusal,
    tenant_labels,
    tenant_refusal,
)
from modelcluster.kube.client import KubeError

# --- the rule -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["acme", "a", "team-1", "0team", "a" * 63, "dev", "tenant-0a1b2c3d", "systems", "system", "my-system-x", "kubex"],
)
def test_ordinary_names_may_be_tenants(name: str) -> None:
    assert tenant_refusal(name) is None
    assert validate_tenant(name) == name


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("default", "system or platform namespace"),
        ("kube-system", "reserved by the platform"),
        ("kube-public", "reserved by the platform"),
        ("kube-node-lease", "reserved by the platform"),
        ("kube-anything", "reserved by the platform"),
        ("openshift", "system or platform namespace"),
        ("openshift-monitoring", "reserved by the platform"),
        ("openshift-config", "reserved by the platform"),
        ("modelcluster-system", "namespace of the API key Secrets"),
        ("istio-system", "ending with '-system'"),
        ("gatekeeper-system", "system or platform namespace"),
        ("flux-system", "ending with '-system'"),
        ("cattle-system", "ending with '-system'"),
        ("cert-manager", "system or platform namespace"),
        ("monitoring", "system or platform namespace"),
        ("ingress-nginx", "system or platform namespace"),
        ("", "DNS-1123"),
        ("Default", "DNS-1123"),
        ("team_1", "DNS-1123"),
        ("-team", "DNS-1123"),
        ("a" * 64, "DNS-1123"),
        ("acme\n", "DNS-1123"),
    ],
)
def test_system_and_platform_namespaces_are_never_tenants(name: str, reason: str) -> None:
    refusal = tenant_refusal(name)
    assert refusal is not None and reason in refusal
    with pytest.raises(InvalidTenant, match="invalid tenant name"):
        validate_tenant(name)


def test_the_configured_key_namespace_is_never_a_tenant() -> None:
    assert tenant_refusal("keys", key_namespace="keys") == "it is the namespace of the API key Secrets"
    assert tenant_refusal("keys") is None
    # The default key namespace stays refused whatever the configured one is.
    assert tenant_refusal("modelcluster-system", key_namespace="keys") is not None


@pytest.mark.parametrize("name", ["default", "kube-system", "istio-system", "acme"])
def test_a_reserved_name_is_still_a_name_for_listing(name: str) -> None:
    assert name_refusal(name) is None
    assert validate_tenant_name(name) == name


def test_the_tenant_label() -> None:
    assert TENANT_LABEL == labels.TENANT == "modelcluster.dev/tenant"
    assert tenant_labels("acme") == {"modelcluster.dev/tenant": "acme"}
    assert is_tenant_namespace("acme", {"modelcluster.dev/tenant": "acme", "other": "x"})
    assert not is_tenant_namespace("acme", {"modelcluster.dev/tenant": "beta"})
    assert not is_tenant_namespace("acme", {"app.kubernetes.io/part-of": "modelcluster"})
    assert not is_tenant_namespace("acme", None)


# --- the gateway: a key Secret for a reserved tenant authenticates nothing ------------------


def _hand_made(key: str, tenant: str, namespace: str = "modelcluster-system") -> dict[str, Any]:
    secret = build_key_secret(key, "acme", 4, namespace)
    secret["data"]["tenant"] = base64.b64encode(tenant.encode()).decode()
    secret["metadata"]["labels"]["modelcluster.dev/tenant"] = tenant
    return secret


@pytest.mark.parametrize("tenant", ["default", "kube-system", "istio-system", "modelcluster-system", "openshift-x"])
def test_a_key_secret_for_a_reserved_tenant_is_invalid(tenant: str) -> None:
    with pytest.raises(InvalidKeySecret, match=f"data.tenant: invalid tenant name '{tenant}'"):
        ApiKeyRecord.from_secret(_hand_made(generate_key(), tenant))


def test_a_key_secret_for_its_own_namespace_is_invalid() -> None:
    with pytest.raises(InvalidKeySecret, match="namespace of the API key Secrets"):
        ApiKeyRecord.from_secret(_hand_made(generate_key(), "keys", namespace="keys"))
    with pytest.raises(InvalidTenant):
        build_key_secret(generate_key(), "keys", 1, "keys")


def test_the_gateway_refuses_a_key_for_default_and_logs_why(caplog: pytest.LogCaptureFixture) -> None:
    good, bad = generate_key(), generate_key()
    store = KeyStore("modelcluster-system")
    with caplog.at_level(logging.WARNING, logger="modelcluster.gateway.keystore"):
        store.reset([build_key_secret(good, "acme", 4, "modelcluster-system"), _hand_made(bad, "default")])
        store.event("ADDED", _hand_made(generate_key(), "kube-system"))
    assert store.authenticate(f"Key {good}") is not None
    assert store.authenticate(f"Key {bad}") is None  # as a wrong key: the middleware answers 401
    assert len(store) == 1
    warnings = [record.getMessage() for record in caplog.records]
    assert any("invalid tenant name 'default'" in line for line in warnings), warnings
    assert any("invalid tenant name 'kube-system'" in line for line in warnings), warnings
    assert all(bad not in line for line in warnings)


def test_a_key_whose_secret_is_changed_to_a_reserved_tenant_stops_working() -> None:
    key = generate_key()
    store = KeyStore("modelcluster-system")
    store.reset([build_key_secret(key, "acme", 4, "modelcluster-system")])
    assert store.authenticate(key) is not None
    store.event("MODIFIED", _hand_made(key, "default"))
    assert store.authenticate(key) is None


# --- the keys CLI: only namespaces made for a tenant ---------------------------------------


class FakeNamespaces:
    """The namespace calls of ``keys create`` over a dict of namespace name -> labels."""

    def __init__(self, existing: dict[str, dict[str, str]]) -> None:
        self.namespaces = existing
        self.patches: list[tuple[str, Any]] = []

    async def create_namespace(self, body: Any) -> Any:
        name = body.metadata.name
        if name in self.namespaces:
            raise KubeError(409, f'namespaces "{name}" already exists')
        self.namespaces[name] = dict(body.metadata.labels)
        return body

    async def read_namespace(self, name: str) -> Any:
        return {"metadata": {"name": name, "labels": self.namespaces[name]}}

    async def patch_namespace(self, name: str, body: Any) -> Any:
        self.patches.append((name, body))
        self.namespaces[name].update(body["metadata"]["labels"])
        return {}


class FakeKube:
    async def call(self, request: Any) -> Any:
        return await request


class FakeApiClient:
    def sanitize_for_serialization(self, obj: Any) -> Any:
        return obj


def fake_api(core: FakeNamespaces) -> keys_cli._Api:
    return keys_cli._Api(cast(Any, FakeApiClient()), cast(Any, FakeKube()), cast(Any, core))


async def test_a_new_tenant_namespace_is_created_with_the_tenant_label() -> None:
    core = FakeNamespaces({})
    assert await keys_cli._ensure_tenant(fake_api(core), "acme", existing=False) == "created"
    assert core.namespaces["acme"] == {"app.kubernetes.io/part-of": "modelcluster", "modelcluster.dev/tenant": "acme"}


async def test_a_labelled_tenant_namespace_is_used_as_it_is() -> None:
    core = FakeNamespaces({"acme": {"modelcluster.dev/tenant": "acme"}})
    assert await keys_cli._ensure_tenant(fake_api(core), "acme", existing=False) is None
    assert core.patches == []


@pytest.mark.parametrize("found", [{}, {"modelcluster.dev/tenant": "beta"}, {"app.kubernetes.io/part-of": "x"}])
async def test_an_existing_namespace_without_the_label_is_refused_unless_asked(found: dict[str, str]) -> None:
    core = FakeNamespaces({"acme": dict(found)})
    with pytest.raises(click.ClickException, match="--existing-namespace") as refused:
        await keys_cli._ensure_tenant(fake_api(core), "acme", existing=False)
    assert "modelcluster.dev/tenant=acme" in refused.value.message
    assert core.patches == [] and core.namespaces["acme"] == found

    assert await keys_cli._ensure_tenant(fake_api(core), "acme", existing=True) == "labelled"
    assert core.namespaces["acme"]["modelcluster.dev/tenant"] == "acme"
