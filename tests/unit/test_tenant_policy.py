"""The tenant NetworkPolicy builder and the operator's decisions about it (pure)."""

from __future__ import annotations

import ipaddress

import pytest

from modelcluster.api.tenant_policy import (
    POLICY_NAME,
    TenantPolicyConfig,
    build_tenant_policy,
    is_tenant_namespace,
)
from modelcluster.operator.controller.tenant_policies import is_ours, needs_apply

CONFIG = TenantPolicyConfig(platform_namespace="mc-system")


def test_in_only_from_the_gateway_and_operator_of_the_platform_on_the_runtime_port() -> None:
    policy = build_tenant_policy("team-a", CONFIG)
    assert policy["metadata"]["name"] == POLICY_NAME and policy["metadata"]["namespace"] == "team-a"
    spec = policy["spec"]
    assert spec["podSelector"] == {} and spec["policyTypes"] == ["Ingress", "Egress"]
    (rule,) = spec["ingress"]
    (peer,) = rule["from"]
    assert peer["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": "mc-system"}}
    (names,) = peer["podSelector"]["matchExpressions"]
    assert names["key"] == "app.kubernetes.io/name"
    assert sorted(names["values"]) == ["modelcluster-gateway", "modelcluster-operator"]
    assert rule["ports"] == [{"port": 8000, "protocol": "TCP"}]


@pytest.mark.parametrize(
    "address", ["169.254.169.254", "10.96.0.1", "172.20.0.5", "192.168.1.1", "100.64.0.1", "127.0.0.1", "0.0.0.1"]
)
def test_out_never_to_metadata_apiserver_or_pod_ranges(address: str) -> None:
    """The default model source excepts every private, shared, loopback and link-local range."""
    dns, *sources = build_tenant_policy("team-a", CONFIG)["spec"]["egress"]
    assert {port["port"] for port in dns["ports"]} == {53}
    for rule in sources:
        for peer in rule["to"]:
            block = peer["ipBlock"]
            inside = ipaddress.ip_address(address) in ipaddress.ip_network(block["cidr"])
            excepted = any(ipaddress.ip_address(address) in ipaddress.ip_network(e) for e in block["except"])
            assert not inside or excepted, (address, block)
        assert rule["ports"] == [{"port": 443, "protocol": "TCP"}]


def test_model_sources_are_configurable_and_may_be_none() -> None:
    only_dns = build_tenant_policy("team-a", TenantPolicyConfig(model_sources=()))
    assert len(only_dns["spec"]["egress"]) == 1
    mirror = {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "hub"}}}]}
    assert build_tenant_policy("t", TenantPolicyConfig(model_sources=(mirror,)))["spec"]["egress"][1] == mirror


@pytest.mark.parametrize(
    ("name", "labels", "expected"),
    [
        ("team-a", {"modelcluster.dev/tenant": "team-a"}, True),
        ("team-a", {"modelcluster.dev/tenant": "team-b"}, False),
        ("team-a", {}, False),
        ("kube-system", {"modelcluster.dev/tenant": "kube-system"}, False),
        ("default", {"modelcluster.dev/tenant": "default"}, False),
        ("mc-system", {"modelcluster.dev/tenant": "mc-system"}, False),
    ],
)
def test_only_labelled_tenants_and_never_platform_namespaces(name: str, labels: dict[str, str], expected: bool) -> None:
    assert is_tenant_namespace(name, labels, ("mc-system",)) is expected


def test_a_policy_is_applied_when_missing_changed_or_relabelled_and_only_over_its_own() -> None:
    desired = build_tenant_policy("team-a", CONFIG)
    assert needs_apply(desired, None)
    assert not needs_apply(desired, {**desired, "metadata": {**desired["metadata"], "resourceVersion": "9"}})
    assert needs_apply(desired, {**desired, "spec": {**desired["spec"], "egress": [{}]}})
    assert needs_apply(desired, {**desired, "metadata": {"name": POLICY_NAME, "labels": {}}})
    assert is_ours(desired)
    assert not is_ours({"metadata": {"labels": {"app.kubernetes.io/managed-by": "Helm"}}})
