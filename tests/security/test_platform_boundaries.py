"""The platform's boundaries on the real control plane: tenant NetworkPolicies that follow tenants as they appear,
keys that serve only labelled tenant namespaces, the gateway's Secret rights narrowed to its key namespace, and a
bootstrap key that comes from a Secret, never from values.
"""

from __future__ import annotations

import base64
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from kubernetes import client as k8s

from modelcluster.api.tenant_policy import (
    POLICY_NAME,
    PRIVATE_RANGES,
    TenantPolicyConfig,
    build_tenant_policy,
)
from modelcluster.devcluster.tools import ensure_tools
from modelcluster.gateway.keys import generate_key

from support import Cluster, GatewayProcess, OperatorProcess, Tenant, drop_namespace, eventually, or_none

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "modelcluster"
TENANT_LABEL = "modelcluster.dev/tenant"
LIST_TASKS = "/models/v2/list/tasks"


def network_policy(cluster: Cluster, namespace: str) -> Any:
    return or_none(
        lambda: k8s.NetworkingV1Api(cluster.api_client).read_namespaced_network_policy(POLICY_NAME, namespace)
    )


def spec_of(cluster: Cluster, policy: Any) -> dict[str, Any]:
    found: dict[str, Any] = cluster.api_client.sanitize_for_serialization(policy)["spec"]
    return found


def test_a_new_tenant_gets_its_network_policy_and_keeps_it(
    cluster: Cluster, operator: OperatorProcess, tenant: Tenant
) -> None:
    """``tenant`` is made by ``modelcluster keys create`` after the operator started: no install-time list has it."""
    expected = build_tenant_policy(tenant.namespace, TenantPolicyConfig(platform_namespace=operator.LEASE_NAMESPACE))
    policy = eventually(lambda: network_policy(cluster, tenant.namespace), timeout=30, what="the tenant's policy")
    assert spec_of(cluster, policy) == expected["spec"]
    egress = expected["spec"]["egress"]
    assert "169.254.0.0/16" in PRIVATE_RANGES and "10.0.0.0/8" in PRIVATE_RANGES
    assert all(rule["ports"] for rule in egress), "no egress rule opens every port"
    # Deleted (or edited) by someone else: put back.
    networking = k8s.NetworkingV1Api(cluster.api_client)
    networking.delete_namespaced_network_policy(POLICY_NAME, tenant.namespace)
    policy = eventually(lambda: network_policy(cluster, tenant.namespace), timeout=30, what="the policy put back")
    assert spec_of(cluster, policy) == expected["spec"]
    networking.patch_namespaced_network_policy(POLICY_NAME, tenant.namespace, {"spec": {"egress": [{}]}})

    def restored() -> bool:
        found = network_policy(cluster, tenant.namespace)
        return found is not None and spec_of(cluster, found) == expected["spec"]

    eventually(restored, timeout=30, what="the policy's egress restored")


def test_a_namespace_that_is_not_a_tenant_gets_no_policy(cluster: Cluster, operator: OperatorProcess) -> None:
    name = f"plain-{uuid.uuid4().hex[:8]}"
    labels = {TENANT_LABEL: "someone-else"}  # labelled for another name: not a tenant
    cluster.core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name, labels=labels)))
    try:
        tenant = f"tenant-{uuid.uuid4().hex[:8]}"
        made = {TENANT_LABEL: tenant}
        cluster.core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=tenant, labels=made)))
        try:
            # The operator has handled the later namespace, so it has seen the earlier one too.
            eventually(lambda: network_policy(cluster, tenant), timeout=30, what="the tenant's policy")
            assert network_policy(cluster, name) is None
        finally:
            drop_namespace(cluster.core, tenant)
    finally:
        drop_namespace(cluster.core, name)


def test_a_key_serves_only_while_its_namespace_is_labelled_a_tenant(
    cluster: Cluster, gateway: GatewayProcess, tenant: Tenant
) -> None:
    def status() -> int:
        return httpx.get(f"{gateway.url}{LIST_TASKS}", headers=tenant.headers, timeout=10).status_code

    assert status() == 200
    cluster.core.patch_namespace(tenant.namespace, {"metadata": {"labels": {TENANT_LABEL: None}}})
    eventually(lambda: status() == 401, timeout=30, what="the key refused once its namespace is no tenant")
    answer = httpx.get(f"{gateway.url}{LIST_TASKS}", headers=tenant.headers, timeout=10)
    assert answer.json() == {"error": "Unauthorized", "output": None}
    cluster.core.patch_namespace(tenant.namespace, {"metadata": {"labels": {TENANT_LABEL: tenant.namespace}}})
    eventually(lambda: status() == 200, timeout=30, what="the key served again")


def helm_template(namespace: str, release: str, *values: str) -> list[dict[str, Any]]:
    done = subprocess.run(
        [str(ensure_tools().helm), "template", release, str(CHART), f"--namespace={namespace}", *values],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def test_helm_template_shows_one_policy_per_known_tenant() -> None:
    manifests = helm_template(
        "mc-system", "mc", "--set=networkPolicy.namespaces={team-a,team-b}", "--set=bootstrapKey.enabled=true"
    )
    policies = {doc["metadata"]["namespace"]: doc for doc in manifests if doc["kind"] == "NetworkPolicy"}
    assert set(policies) == {"team-a", "team-b", "demo"}
    for namespace, policy in policies.items():
        assert policy["spec"] == build_tenant_policy(namespace, TenantPolicyConfig("mc-system"))["spec"]


@pytest.fixture
def chart_rbac(cluster: Cluster, kubectl: list[str]) -> Iterator[tuple[str, str]]:
    """The chart's gateway RBAC (its ServiceAccount, roles, bindings, key namespace) applied under a fresh release."""
    release = f"sec{uuid.uuid4().hex[:6]}"
    namespace = f"{release}-system"
    cluster.core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=namespace)))
    kinds = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "Namespace"}
    docs = [
        doc
        for doc in helm_template(namespace, release)
        if doc["kind"] in kinds
        and ("-gateway" in doc["metadata"]["name"] or doc["metadata"]["name"] == f"{namespace}-keys")
    ]
    manifest = yaml.safe_dump_all(docs)
    subprocess.run([*kubectl, "apply", "-f", "-"], input=manifest, text=True, check=True, capture_output=True)
    try:
        yield namespace, f"system:serviceaccount:{namespace}:{release}-modelcluster-gateway"
    finally:
        subprocess.run([*kubectl, "delete", "--ignore-not-found", "-f", "-"], input=manifest, text=True, check=True)
        drop_namespace(cluster.core, namespace)


def test_the_gateway_may_read_secrets_of_its_key_namespace_only(
    kubectl: list[str], chart_rbac: tuple[str, str]
) -> None:
    namespace, user = chart_rbac

    def can(*args: str) -> bool:
        done = subprocess.run([*kubectl, "auth", "can-i", *args, f"--as={user}"], capture_output=True, text=True)
        return done.stdout.strip() == "yes"

    keys = f"{namespace}-keys"
    assert can("list", "secrets", "-n", keys) and can("watch", "secrets", "-n", keys)
    for verb in ("get", "create", "update", "patch", "delete"):
        assert not can(verb, "secrets", "-n", keys), verb
    # The platform namespace holds the signing key, the bootstrap key and Helm's release records.
    for verb in ("get", "list", "watch"):
        assert not can(verb, "secrets", "-n", namespace), verb
        assert not can(verb, "secrets", "-n", "default"), verb
        assert not can(verb, "secrets", "--all-namespaces"), verb
    assert can("list", "namespaces") and not can("patch", "namespaces")


def test_the_bootstrap_key_comes_from_a_secret_and_serves_its_tenant(
    cluster: Cluster, operator: OperatorProcess, tmp_path: Path, tenant: Tenant
) -> None:
    """As the chart runs it: the key from a Secret of the administrator's, given as the environment."""
    key = generate_key()
    secret = k8s.V1Secret(metadata=k8s.V1ObjectMeta(name=f"first-{uuid.uuid4().hex[:6]}"), string_data={"key": key})
    made = cluster.core.create_namespaced_secret(operator.LEASE_NAMESPACE, secret)
    try:
        read = cluster.core.read_namespaced_secret(made.metadata.name, operator.LEASE_NAMESPACE)
        from_secret = base64.b64decode(read.data["key"]).decode()
        args = [f"--bootstrap-tenant={tenant.namespace}", "--bootstrap-concurrency=2"]
        process = GatewayProcess(cluster, tmp_path, args, extra_env={"MODELCLUSTER_GATEWAY_BOOTSTRAP_KEY": from_secret})
        process.start()
        try:
            answer = httpx.get(f"{process.url}{LIST_TASKS}", headers={"Authorization": f"Key {key}"}, timeout=10)
            assert answer.status_code == 200, answer.text
            assert key not in process.log_path.read_text(errors="replace")
            wrong = httpx.get(f"{process.url}{LIST_TASKS}", headers={"Authorization": f"Key {generate_key()}"})
            assert wrong.status_code == 401
        finally:
            process.stop()
    finally:
        cluster.core.delete_namespaced_secret(made.metadata.name, operator.LEASE_NAMESPACE)
    # A bootstrap key for a system namespace never starts a gateway.
    refused = GatewayProcess(
        cluster, tmp_path, ["--bootstrap-tenant=kube-system"], extra_env={"MODELCLUSTER_GATEWAY_BOOTSTRAP_KEY": key}
    )
    with pytest.raises(AssertionError, match="exited"):
        refused.start()
    assert "invalid tenant name 'kube-system'" in refused.log_path.read_text(errors="replace")
