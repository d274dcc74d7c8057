"""The operator on a real control plane: children, status, scaling, rejections, GC, crash safety."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from modelcluster.api.naming import object_name

from support import GIANT_MODEL, REJECTED_MODEL, Cluster, OperatorProcess, eventually, modelcluster_body, or_none

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
GROUP, VERSION, PLURAL = "modelcluster.dev", "v1alpha1", "modelclusters"
MANAGED = "app.kubernetes.io/managed-by=modelcluster-operator"


def objects(cluster: Cluster) -> k8s.CustomObjectsApi:
    return k8s.CustomObjectsApi(cluster.api_client)


def model_cluster(model: str, **spec: Any) -> dict[str, Any]:
    return modelcluster_body(model, spec=spec)


def create(cluster: Cluster, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = objects(cluster).create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    return result


def read(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    result: dict[str, Any] = objects(cluster).get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    return result


def status_of(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    status: dict[str, Any] = read(cluster, namespace, name).get("status") or {}
    return status


def deployment_of(cluster: Cluster, namespace: str, name: str) -> k8s.V1Deployment | None:
    return or_none(lambda: cluster.apps.read_namespaced_deployment(name, namespace))


def test_applied_cluster_gets_gpu_deployment_service_and_runs(
    cluster: Cluster, namespace: str, operator: OperatorProcess, kubectl: list[str], tmp_path: Path
) -> None:
    model = "openai-community/gpt2"
    name = object_name(model)
    manifest = tmp_path / "mc.yaml"
    manifest.write_text(yaml.safe_dump(model_cluster(model, capacity={"desired": 2, "max": 3})))
    subprocess.run([*kubectl, "apply", "-n", namespace, "-f", str(manifest)], check=True)

    deployment = eventually(lambda: deployment_of(cluster, namespace, name), what="the Deployment")
    owner = deployment.metadata.owner_references[0]
    assert (owner.kind, owner.name, owner.controller) == ("ModelCluster", name, True)
    pod = deployment.spec.template.spec
    container = pod.containers[0]
    assert container.image.endswith("runtime-llm:0.1.0")
    assert container.resources.limits["nvidia.com/gpu"] == "1"
    assert {e.name: e.value for e in container.env}["MODEL_ID"] == model
    assert container.readiness_probe.http_get.path == "/health"
    assert container.liveness_probe.http_get.path == "/health"
    assert container.startup_probe.http_get.path == "/health"
    security = container.security_context
    assert security.allow_privilege_escalation is False
    assert security.read_only_root_filesystem is True
    assert security.capabilities.drop == ["ALL"]
    assert pod.security_context.run_as_non_root is True
    assert pod.security_context.seccomp_profile.type == "RuntimeDefault"
    assert any(t.key == "nvidia.com/gpu" for t in pod.tolerations)
    assert deployment.spec.replicas == 2

    service = cluster.core.read_namespaced_service(name, namespace)
    assert service.metadata.owner_references[0].name == name

    eventually(lambda: status_of(cluster, namespace, name).get("status") == "running", what="status running")
    eventually(lambda: status_of(cluster, namespace, name).get("readyReplicas") == 2, what="2 ready replicas")
    pods = cluster.core.list_namespaced_pod(namespace, label_selector=f"app.kubernetes.io/instance={name}").items
    assert len(pods) == 2
    for item in pods:
        assert cluster.core.read_node(item.spec.node_name).metadata.labels.get("nvidia.com/gpu.present") == "true"

    table = subprocess.run([*kubectl, "get", "mc", "-n", namespace], capture_output=True, text=True, check=True)
    header, row = table.stdout.splitlines()[:2]
    assert header.split() == ["NAME", "MODEL", "TASK", "STATUS", "READY", "DESIRED", "MAX", "AGE"]
    assert row.split()[:7] == [name, model, "text-generation", "running", "2", "2", "3"]


def test_scale_subresource_and_patch_reach_the_deployment(
    cluster: Cluster, namespace: str, operator: OperatorProcess, kubectl: list[str]
) -> None:
    model = "microsoft/Phi-3-mini-4k-instruct"
    name = object_name(model)
    create(cluster, namespace, model_cluster(model, capacity={"min": 0, "desired": 1, "max": 4}))
    eventually(lambda: deployment_of(cluster, namespace, name), what="the Deployment")

    subprocess.run([*kubectl, "scale", "mc", name, "-n", namespace, "--replicas=2"], check=True)
    eventually(lambda: (d := deployment_of(cluster, namespace, name)) and d.spec.replicas == 2, what="replicas 2")

    objects(cluster).patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name, {"spec": {"capacity": {"desired": 3}}}
    )
    eventually(lambda: (d := deployment_of(cluster, namespace, name)) and d.spec.replicas == 3, what="replicas 3")
    assert read(cluster, namespace, name)["spec"]["capacity"]["desired"] == 3


@pytest.mark.parametrize(
    ("spec", "field", "message"),
    [
        ({"capacity": {"desired": 3, "max": 2}}, "spec.capacity", "capacity.desired must be less than or equal"),
        ({"capacity": {"desired": 0, "max": 0}}, "spec.capacity", "capacity.max must be at least 1"),
        ({"capacity": {"min": 2, "desired": 1, "max": 3}}, "spec.capacity", "capacity.min must be less than"),
        ({"timeout": -5}, "spec.timeout", "should be greater than or equal to 1"),
        ({"capacity": {"desired": "three"}}, "spec.capacity.desired", "must be of type integer"),
    ],
    ids=["desired-above-max", "max-zero", "min-above-desired", "negative-timeout", "string-for-number"],
)
def test_apiserver_rejects_invalid_specs(
    cluster: Cluster, namespace: str, operator: OperatorProcess, spec: dict[str, Any], field: str, message: str
) -> None:
    with pytest.raises(ApiException) as rejected:
        create(cluster, namespace, model_cluster("acme/rejected-model", task="text-classification", **spec))
    assert rejected.value.status == 422
    assert field in rejected.value.body
    assert message in rejected.value.body
    assert not objects(cluster).list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"]


def test_apiserver_rejects_malformed_model_id(cluster: Cluster, namespace: str, operator: OperatorProcess) -> None:
    body = model_cluster("acme/x", task="text-classification")
    body["spec"]["model"] = "no-slash-here"
    with pytest.raises(ApiException) as rejected:
        create(cluster, namespace, body)
    assert rejected.value.status == 422
    assert "spec.model" in rejected.value.body
    assert "model must be shaped org/name" in rejected.value.body


def test_apiserver_rejects_a_changed_model(cluster: Cluster, namespace: str, operator: OperatorProcess) -> None:
    model = "acme/immutable-model"
    create(cluster, namespace, model_cluster(model, task="text-classification", capacity={"desired": 0, "max": 1}))
    with pytest.raises(ApiException) as rejected:
        objects(cluster).patch_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, object_name(model), {"spec": {"model": "acme/other-model"}}
        )
    assert rejected.value.status == 422
    assert "spec.model" in rejected.value.body
    assert "model is immutable" in rejected.value.body
    assert read(cluster, namespace, object_name(model))["spec"]["model"] == model


def test_unknown_model_without_task_fails_and_creates_nothing(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    model = "nobody/unknown-model"
    name = object_name(model)
    create(cluster, namespace, model_cluster(model))
    eventually(lambda: status_of(cluster, namespace, name).get("status") == "failed", what="status failed")
    assert status_of(cluster, namespace, name)["reason"] == "UnknownModel"
    assert not cluster.apps.list_namespaced_deployment(namespace).items
    assert not cluster.core.list_namespaced_service(namespace).items


def test_deleting_the_cluster_collects_its_children(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    model = "acme/collected-model"
    name = object_name(model)
    create(cluster, namespace, model_cluster(model, task="text-generation"))
    eventually(lambda: deployment_of(cluster, namespace, name), what="the Deployment")
    eventually(lambda: cluster.core.list_namespaced_pod(namespace).items, what="a pod")

    objects(cluster).delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)

    eventually(lambda: deployment_of(cluster, namespace, name) is None, what="the Deployment to be collected")
    eventually(lambda: not cluster.core.list_namespaced_service(namespace).items, what="the Service to be collected")
    eventually(lambda: not cluster.core.list_namespaced_pod(namespace).items, what="the pods to be collected")


def test_cluster_needing_more_gpus_than_any_node_has_fails_unschedulable(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    name = object_name(GIANT_MODEL)
    create(cluster, namespace, model_cluster(GIANT_MODEL))
    deployment = eventually(lambda: deployment_of(cluster, namespace, name), what="the Deployment")
    assert deployment.spec.template.spec.containers[0].resources.limits["nvidia.com/gpu"] == "16"
    assert status_of(cluster, namespace, name).get("status") != "failed", "not failed before the deadline"

    status = eventually(
        lambda: (s := status_of(cluster, namespace, name)).get("status") == "failed" and s,
        timeout=OperatorProcess.UNSCHEDULABLE_DEADLINE + 30,
        what="status failed",
    )
    assert status["reason"] == "Unschedulable"
    assert "nvidia.com/gpu" in status["message"]


def test_operator_killed_during_a_burst_converges_without_duplicates(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    models = [f"burst-org/model-{index:02d}" for index in range(50)]
    for index, model in enumerate(models):
        create(cluster, namespace, model_cluster(model, task="text-classification", capacity={"desired": 0, "max": 1}))
        if index == 20:
            operator.kill()
    operator.start()

    def converged() -> bool:
        items = objects(cluster).list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"]
        return len(items) == 50 and all((i.get("status") or {}).get("status") == "stopped" for i in items)

    eventually(converged, timeout=400, interval=1.0, what="all 50 clusters to converge")
    names = {object_name(model) for model in models}
    deployments = cluster.apps.list_namespaced_deployment(namespace, label_selector=MANAGED).items
    services = cluster.core.list_namespaced_service(namespace, label_selector=MANAGED).items
    assert sorted(d.metadata.name for d in deployments) == sorted(names)
    assert sorted(s.metadata.name for s in services) == sorted(names)
    for child in [*deployments, *services]:
        owners = child.metadata.owner_references
        assert len(owners) == 1
        assert owners[0].name == child.metadata.name


def test_a_hand_edited_deployment_and_a_deleted_service_are_restored(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    model = "acme/drifting-model"
    name = object_name(model)
    create(cluster, namespace, model_cluster(model, task="text-classification", capacity={"desired": 0, "max": 1}))
    deployment = eventually(lambda: deployment_of(cluster, namespace, name), what="the Deployment")
    image = deployment.spec.template.spec.containers[0].image
    eventually(lambda: cluster.core.list_namespaced_service(namespace).items, what="the Service")

    patch = {"spec": {"template": {"spec": {"containers": [{"name": "runtime", "image": "someone/else:1"}]}}}}
    cluster.apps.patch_namespaced_deployment(name, namespace, patch)
    eventually(
        lambda: deployment_of(cluster, namespace, name).spec.template.spec.containers[0].image == image,  # type: ignore[union-attr]
        timeout=30,
        what="the operator to restore the edited image",
    )

    cluster.core.delete_namespaced_service(name, namespace)
    eventually(
        lambda: any(s.metadata.name == name and s.metadata.deletion_timestamp is None
                    for s in cluster.core.list_namespaced_service(namespace).items),
        timeout=30,
        what="the operator to create the deleted Service again",
    )  # fmt: skip


def test_a_child_the_apiserver_rejects_is_reported(cluster: Cluster, namespace: str, operator: OperatorProcess) -> None:
    name = object_name(REJECTED_MODEL)
    create(cluster, namespace, model_cluster(REJECTED_MODEL, capacity={"desired": 0, "max": 1}))
    status = eventually(
        lambda: (s := status_of(cluster, namespace, name)).get("reason") == "ChildRejected" and s,
        timeout=30,
        what="status reason ChildRejected",
    )
    assert status["status"] == "failed"
    assert "cpu" in status["message"]
    assert status.get("observedGeneration") is None, "the rejected generation is not claimed as observed"
    events = cluster.core.list_namespaced_event(namespace, field_selector=f"involvedObject.name={name}").items
    assert any(e.reason == "ChildRejected" and e.type == "Warning" for e in events)
    assert deployment_of(cluster, namespace, name) is None


def test_a_restarted_operator_writes_nothing_for_converged_clusters(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    models = [f"quiet-org/model-{index}" for index in range(5)]
    for model in models:
        create(cluster, namespace, model_cluster(model, task="text-classification", capacity={"desired": 0, "max": 1}))

    def versions() -> dict[str, str]:
        items = objects(cluster).list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"]
        found = {f"mc/{i['metadata']['name']}": i["metadata"]["resourceVersion"] for i in items
                 if (i.get("status") or {}).get("status") == "stopped"}  # fmt: skip
        found |= {f"deploy/{d.metadata.name}": d.metadata.resource_version
                  for d in cluster.apps.list_namespaced_deployment(namespace).items}  # fmt: skip
        found |= {f"svc/{s.metadata.name}": s.metadata.resource_version
                  for s in cluster.core.list_namespaced_service(namespace).items}  # fmt: skip
        return found

    previous: dict[str, str] = {}

    def settled() -> dict[str, str] | None:
        """The versions once every object exists and two reads two seconds apart agree."""
        nonlocal previous
        now, earlier, previous = versions(), previous, versions()
        return now if len(now) == 3 * len(models) and now == earlier else None

    before = eventually(settled, timeout=90, interval=2.0, what="the clusters to converge and settle")
    operator.stop()
    operator.start()

    def counted(prefix: str) -> float:
        lines = operator.metrics().splitlines()
        return sum(float(x.rsplit(" ", 1)[1]) for x in lines if x.startswith(prefix))

    # Every cluster on the control plane is reconciled at least once after the start (these five among them),
    # and the autoscaler has looked at every cluster a few times.
    everywhere = len(objects(cluster).list_cluster_custom_object(GROUP, VERSION, PLURAL)["items"])
    eventually(lambda: counted("controller_runtime_reconcile_total{") >= everywhere, timeout=60,
               what="the restarted operator to reconcile")  # fmt: skip
    eventually(lambda: counted("modelcluster_autoscaler_tick_seconds_count") >= 3, timeout=60, what="3 ticks")
    assert versions() == before
