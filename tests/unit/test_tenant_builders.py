from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from modelcluster.api import ConditionStatus, Tenant
from modelcluster.operator.builders.tenant import (
    INVALID_SPEC,
    NAMESPACE_IN_USE,
    NAMESPACE_TAKEN,
    QUOTA_NAME,
    SYSTEM_NAMESPACE,
    Refusal,
    claimed_by_another,
    in_use_refusal,
    limit_range_body,
    namespace_body,
    namespace_refusal,
    parse_tenant,
    quota_body,
    tenant_status,
    uncounted,
    usage_of,
)

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def body(name: str, created: str = "2026-01-01T00:00:00Z", **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "uid": f"uid-{name}", "generation": 3, "creationTimestamp": created},
        "spec": spec,
    }


def tenant(name: str, **spec: Any) -> Tenant:
    parsed = parse_tenant(body(name, **spec))
    assert isinstance(parsed, Tenant)
    return parsed


@pytest.mark.parametrize("namespace", ["default", "kube-system", "kube-public", "modelcluster-system", "istio-system"])
def test_system_namespaces_are_refused(namespace: str) -> None:
    refusal = namespace_refusal(tenant("t", namespace=namespace), reserved=())
    assert refusal is not None and refusal.reason == SYSTEM_NAMESPACE
    assert namespace in refusal.message


def test_the_operators_and_gateways_own_namespaces_are_refused() -> None:
    refusal = namespace_refusal(tenant("t", namespace="platform"), reserved=("platform",))
    assert refusal is not None and refusal.reason == SYSTEM_NAMESPACE
    assert namespace_refusal(tenant("team-a"), reserved=("platform",)) is None


def test_an_invalid_spec_is_refused() -> None:
    refused = parse_tenant(body("t", quotas={"gpus": -1}))
    assert isinstance(refused, Refusal) and refused.reason == INVALID_SPEC and "gpus" in refused.message


def test_the_older_tenant_keeps_a_shared_namespace() -> None:
    old = body("old", "2026-01-01T00:00:00Z", namespace="shared")
    new = body("new", "2026-01-02T00:00:00Z", namespace="shared")
    assert claimed_by_another(tenant("old", namespace="shared"), old, [new]) is None
    refusal = claimed_by_another(tenant("new", namespace="shared"), new, [old])
    assert refusal is not None and refusal.reason == NAMESPACE_TAKEN and "old" in refusal.message


def test_foreign_workloads_refuse_the_namespace() -> None:
    assert in_use_refusal("apps", []) is None
    refusal = in_use_refusal("apps", ["Deployment/web"])
    assert refusal is not None and refusal.reason == NAMESPACE_IN_USE and "Deployment/web" in refusal.message


def test_namespace_carries_the_tenant_label() -> None:
    labels = namespace_body(tenant("team-a"))["metadata"]["labels"]
    assert labels["modelcluster.dev/tenant"] == "team-a"
    assert namespace_body(tenant("t", namespace="ns-b"))["metadata"] == {
        "name": "ns-b",
        "labels": {"app.kubernetes.io/part-of": "modelcluster", "modelcluster.dev/tenant": "ns-b"},
    }


def test_quota_lists_the_set_quotas_and_is_owned_by_the_tenant() -> None:
    source = body("team-a", quotas={"modelClusters": 2, "gpus": 0, "replicas": 4})
    quota = quota_body(tenant("team-a", quotas={"modelClusters": 2, "gpus": 0, "replicas": 4}), source)
    assert quota["metadata"]["name"] == QUOTA_NAME
    assert quota["metadata"]["namespace"] == "team-a"
    assert quota["spec"]["hard"] == {"count/modelclusters.modelcluster.dev": "2", "requests.nvidia.com/gpu": "0"}
    (owner,) = quota["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == ("Tenant", "team-a", "uid-team-a", True)
    assert quota_body(tenant("x"), body("x"))["spec"]["hard"] == {}


def test_the_limit_range_gives_default_requests_only_and_is_owned_by_the_tenant() -> None:
    plain = limit_range_body(tenant("team-a"), body("team-a"))
    assert plain["metadata"]["namespace"] == "team-a" and plain["kind"] == "LimitRange"
    assert plain["spec"]["limits"] == [{"type": "Container", "defaultRequest": {"cpu": "100m", "memory": "128Mi"}}]
    assert plain["metadata"]["ownerReferences"][0]["uid"] == "uid-team-a"
    given = tenant("team-b", namespace="ns-b", defaults={"container": {"memory": "1Gi"}})
    shaped = limit_range_body(given, body("team-b"))
    assert shaped["metadata"]["namespace"] == "ns-b"
    assert shaped["spec"]["limits"][0]["defaultRequest"] == {"cpu": "100m", "memory": "1Gi"}


def test_status_ready_with_usage() -> None:
    hard = {"count/modelclusters.modelcluster.dev": "3"}
    pending = tenant_status(body("team-a"), NOW, quota={"spec": {"hard": hard}})
    assert (pending.conditions[0].status, pending.conditions[0].reason) == (ConditionStatus.FALSE, "QuotaPending")
    uncounted = {"spec": {"hard": hard}, "status": {"hard": hard, "used": {}}}
    assert tenant_status(body("team-a"), NOW, quota=uncounted).conditions[0].reason == "QuotaPending"
    used = {"count/modelclusters.modelcluster.dev": "1", "pods": "2"}
    quota = {"spec": {"hard": hard}, "status": {"hard": hard, "used": used}}
    status = tenant_status(body("team-a"), NOW, quota=quota)
    assert status.namespace == "team-a"
    assert status.used is not None and (status.used.model_clusters, status.used.pods, status.used.gpus) == (1, 2, None)
    (ready,) = status.conditions
    assert (ready.type, ready.status, ready.reason, ready.observed_generation) == (
        "Ready",
        ConditionStatus.TRUE,
        "Reconciled",
        3,
    )
    assert usage_of(None) is None


def test_status_refused_keeps_its_transition_time() -> None:
    refusal = Refusal(SYSTEM_NAMESPACE, "namespace default cannot be a tenant's")
    first = tenant_status(body("t"), NOW, refusal=refusal).to_k8s()
    assert first["conditions"][0]["status"] == "False"
    assert first["conditions"][0]["reason"] == SYSTEM_NAMESPACE
    later = tenant_status({**body("t"), "status": first}, datetime(2027, 1, 1, tzinfo=UTC), refusal=refusal)
    assert later.conditions[0].last_transition_time == NOW
    assert "namespace" not in first


def test_uncounted_resources_and_leaving_them_out() -> None:
    hard = {"count/modelclusters.modelcluster.dev": "1", "pods": "3"}
    quota = {"spec": {"hard": hard}, "status": {"hard": hard, "used": {"pods": "0"}}}
    assert uncounted(quota) == ["count/modelclusters.modelcluster.dev"]
    assert uncounted(None) == []
    source = body("t", quotas={"modelClusters": 1, "pods": 3})
    left = quota_body(tenant("t", quotas={"modelClusters": 1, "pods": 3}), source, leave_out=uncounted(quota))
    assert left["spec"]["hard"] == {"pods": "3"}
