from __future__ import annotations

from typing import Any

from modelcluster.api import Tenant
from modelcluster.gateway.kube_answers import api_error
from modelcluster.gateway.quotas import max_replicas, merged_spec, quota_refusal
from modelcluster.kube.client import KubeError


def tenant(**quotas: int) -> Tenant:
    return Tenant.from_k8s({"metadata": {"name": "team-a"}, "spec": {"quotas": quotas}})


def cluster(name: str, model: str = "org/m", **capacity: int) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "team-a"}, "spec": {"model": model, "capacity": capacity}}


def one_gpu(spec: Any) -> int:
    return 1


def test_no_tenant_no_quota() -> None:
    assert quota_refusal(None, [cluster("a")] * 50, "b", {"model": "org/b"}, one_gpu) is None


def test_cluster_count() -> None:
    clusters = [cluster("a"), cluster("b")]
    refusal = quota_refusal(tenant(modelClusters=2), clusters, "c", {"model": "org/c"}, one_gpu)
    assert refusal is not None
    assert "modelClusters" in refusal and "2 ModelClusters" in refusal and "has 2" in refusal
    # Changing one of the two is no new cluster.
    assert quota_refusal(tenant(modelClusters=2), clusters, "a", {"model": "org/m"}, one_gpu) is None


def test_replicas_sum_capacity_max() -> None:
    clusters = [cluster("a", desired=1, max=3)]
    spec = {"model": "org/b", "capacity": {"desired": 1, "max": 2}}
    refusal = quota_refusal(tenant(replicas=4), clusters, "b", spec, one_gpu)
    assert refusal is not None and "quota replicas" in refusal and "use 3" in refusal and "asks for 2" in refusal
    assert quota_refusal(tenant(replicas=5), clusters, "b", spec, one_gpu) is None


def test_gpus_are_replicas_times_the_tier() -> None:
    spec = {"model": "org/b", "capacity": {"desired": 2}}
    refusal = quota_refusal(tenant(gpus=3), [], "b", spec, lambda s: 2)
    assert refusal is not None and "quota gpus" in refusal and "asks for 4" in refusal
    assert quota_refusal(tenant(gpus=3), [], "b", spec, lambda s: 0) is None


def test_zero_quota_refuses_the_first_cluster() -> None:
    assert quota_refusal(tenant(modelClusters=0), [], "a", {"model": "org/a"}, one_gpu) is not None


def test_max_defaults_to_desired_then_one() -> None:
    assert max_replicas({"capacity": {"desired": 3}}) == 3
    assert max_replicas({"capacity": {"desired": 3, "max": 5}}) == 5
    assert max_replicas({}) == 1


def test_merged_spec_merges_capacity() -> None:
    current = {"model": "org/a", "capacity": {"min": 0, "desired": 1, "max": 2}, "timeout": 60}
    merged = merged_spec(current, {"spec": {"capacity": {"max": 9}, "timeout": 5}})
    assert merged == {"model": "org/a", "capacity": {"min": 0, "desired": 1, "max": 9}, "timeout": 5}


def test_the_apiservers_quota_refusal_is_passed_on() -> None:
    message = 'modelclusters.modelcluster.dev "x" is forbidden: exceeded quota: modelcluster-tenant'
    error = api_error(KubeError(403, message), "cluster for org/x", caller_body=True)
    assert (error.status, error.kind) == (403, "quota_exceeded")
    assert message in error.message
    other = api_error(KubeError(403, "forbidden: User cannot create"), "cluster for org/x", caller_body=True)
    assert other.status == 503 and "cannot" not in other.message
