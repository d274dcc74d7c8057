"""GPU-aware placement, rollouts without outage and the persistent model cache, on a real control plane."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from modelcluster.api.naming import object_name

from support import Cluster, OperatorProcess, eventually, modelcluster_body, or_none

pytestmark = pytest.mark.cluster

GROUP, VERSION, PLURAL = "modelcluster.dev", "v1alpha1", "modelclusters"
GPU_MEMORY = "nvidia.com/gpu.memory"


def create(cluster: Cluster, namespace: str, model: str, **spec: Any) -> str:
    name = object_name(model)
    body = modelcluster_body(model, spec=spec)
    k8s.CustomObjectsApi(cluster.api_client).create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    return name


def deployment_of(cluster: Cluster, namespace: str, name: str) -> k8s.V1Deployment | None:
    return or_none(lambda: cluster.apps.read_namespaced_deployment(name, namespace))


def claim_of(cluster: Cluster, namespace: str, name: str) -> k8s.V1PersistentVolumeClaim | None:
    return or_none(lambda: cluster.core.read_namespaced_persistent_volume_claim(name, namespace))


def gpu_memory_of_nodes(cluster: Cluster) -> dict[str, int]:
    return {
        node.metadata.name: int(node.metadata.labels[GPU_MEMORY])
        for node in cluster.core.list_node().items
        if GPU_MEMORY in (node.metadata.labels or {})
    }


def test_a_model_needing_an_80gb_gpu_never_lands_on_a_24gb_node(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    memory = gpu_memory_of_nodes(cluster)
    small = {name for name, mib in memory.items() if mib < 40_000}
    large = {name for name, mib in memory.items() if mib >= 80_000}
    assert small and large, f"the local cluster has 24 GB and 80 GB GPU nodes: {memory}"

    # 13B parameters: the catalog's 64 GB tier on one GPU, which only an 80 GB device holds.
    name = create(cluster, namespace, "Nexusflow/NexusRaven-V2-13B", capacity={"desired": 6, "max": 6})
    deployment = eventually(lambda: deployment_of(cluster, namespace, name), what="the Deployment")
    terms = deployment.spec.template.spec.affinity.node_affinity.required_during_scheduling_ignored_during_execution
    expression = terms.node_selector_terms[0].match_expressions[0]
    assert (expression.key, expression.operator) == (GPU_MEMORY, "Gt")

    def placed() -> list[str] | None:
        pods = cluster.core.list_namespaced_pod(namespace, label_selector=f"app.kubernetes.io/instance={name}").items
        nodes = [pod.spec.node_name for pod in pods if pod.spec.node_name]
        return nodes if len(nodes) == 6 else None

    nodes = eventually(placed, timeout=120, what="6 scheduled pods")
    assert set(nodes) <= large, f"pods on {sorted(set(nodes))}, 80 GB nodes are {sorted(large)}"
    assert not set(nodes) & small


def test_a_small_model_may_use_the_24gb_node(cluster: Cluster, namespace: str, operator: OperatorProcess) -> None:
    """The 24 GB node takes pods whose tier fits it: the affinity excludes by memory, not by node type."""
    name = create(cluster, namespace, "acme/small-model", task="text-generation", capacity={"desired": 1, "max": 1})
    deployment = eventually(lambda: deployment_of(cluster, namespace, name), what="the Deployment")
    terms = deployment.spec.template.spec.affinity.node_affinity.required_during_scheduling_ignored_during_execution
    floor = int(terms.node_selector_terms[0].match_expressions[0].values[0])
    small = [mib for mib in gpu_memory_of_nodes(cluster).values() if mib < 40_000]
    assert small and all(mib > floor for mib in small)


def test_rollouts_surge_by_default_and_the_spec_can_trade_the_surge_gpu(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    default = create(cluster, namespace, "acme/rolling-model", task="chat", capacity={"desired": 0, "max": 1})
    scarce = create(
        cluster,
        namespace,
        "acme/scarce-model",
        task="chat",
        capacity={"desired": 0, "max": 1},
        rollout={"maxSurge": 0, "maxUnavailable": 1},
    )
    for name, surge, unavailable in ((default, 1, 0), (scarce, 0, 1)):
        deployment = eventually(lambda n=name: deployment_of(cluster, namespace, n), what=f"Deployment {name}")
        rolling = deployment.spec.strategy.rolling_update
        assert (rolling.max_surge, rolling.max_unavailable) == (surge, unavailable)


def test_a_persistent_cache_claim_is_created_owned_and_mounted(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    name = create(
        cluster, namespace, "acme/cached-model", task="chat", capacity={"desired": 0, "max": 1}, cache={"size": "5Gi"}
    )
    claim = eventually(lambda: claim_of(cluster, namespace, f"{name}-model-cache"), what="the cache claim")
    assert claim.spec.resources.requests["storage"] == "5Gi"
    assert claim.spec.access_modes == ["ReadWriteOnce"]
    owner = claim.metadata.owner_references[0]
    assert (owner.kind, owner.name, owner.controller) == ("ModelCluster", name, True)

    deployment = eventually(lambda: deployment_of(cluster, namespace, name), what="the Deployment")
    template = deployment.spec.template.spec
    volumes = {volume.name: volume for volume in template.volumes}
    mounts = {mount.mount_path: mount.name for mount in template.containers[0].volume_mounts}
    cache = volumes[mounts["/models/cache"]]
    assert cache.persistent_volume_claim.claim_name == claim.metadata.name
    assert cache.empty_dir is None


def test_a_shared_claim_is_mounted_not_created(cluster: Cluster, namespace: str, operator: OperatorProcess) -> None:
    name = create(
        cluster,
        namespace,
        "acme/shared-cache-model",
        task="chat",
        capacity={"desired": 0, "max": 1},
        cache={"claimName": "shared-models"},
    )
    deployment = eventually(lambda: deployment_of(cluster, namespace, name), what="the Deployment")
    volumes = {volume.name: volume for volume in deployment.spec.template.spec.volumes}
    assert volumes["model-cache"].persistent_volume_claim.claim_name == "shared-models"
    assert not cluster.core.list_namespaced_persistent_volume_claim(namespace).items


def test_token_and_pull_secrets_reach_the_pod_template(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    name = create(
        cluster,
        namespace,
        "acme/gated-model",
        task="chat",
        capacity={"desired": 0, "max": 1},
        tokenSecret={"name": "hub-token"},
        imagePullSecrets=[{"name": "registry-login"}],
    )
    deployment = eventually(lambda: deployment_of(cluster, namespace, name), what="the Deployment")
    template = deployment.spec.template.spec
    assert [secret.name for secret in template.image_pull_secrets] == ["registry-login"]
    token = next(env for env in template.containers[0].env if env.name == "HF_TOKEN")
    assert (token.value_from.secret_key_ref.name, token.value_from.secret_key_ref.key) == ("hub-token", "token")
    assert template.containers[0].termination_message_policy == "FallbackToLogsOnError"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"cache": {"size": "1Gi", "claimName": "shared"}}, "cache needs exactly one of claimName"),
        ({"cache": {}}, "cache needs exactly one of claimName"),
        ({"rollout": {"maxSurge": 0}}, "cannot both be 0"),
        ({"cache": {"size": "plenty"}}, "spec.cache.size"),
    ],
    ids=["both-caches", "no-cache-source", "rollout-stuck", "bad-size"],
)
def test_apiserver_rejects_invalid_caches_and_rollouts(
    cluster: Cluster, namespace: str, operator: OperatorProcess, spec: dict[str, Any], message: str
) -> None:
    with pytest.raises(ApiException) as rejected:
        create(cluster, namespace, "acme/rejected-cache", task="chat", **spec)
    assert rejected.value.status == 422
    assert message in rejected.value.body
