from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from modelcluster.api import ModelClusterSpec
from modelcluster.api.labels import MANAGED_BY, MODEL, selector_labels, selector_string
from modelcluster.api.naming import is_label_value, model_label_value
from modelcluster.catalog import Catalog, load_catalog
from modelcluster.operator.builders.deployment import build_deployment
from modelcluster.operator.builders.replicas import REPLICAS_FIELD_MANAGER, build_replicas_apply, desired_replicas
from modelcluster.operator.builders.service import build_service, service_endpoint
from modelcluster.operator.builders.workload import PodOptions, Workload
from modelcluster.runtime.settings import RuntimeSettings

WorkloadFactory = Callable[..., Workload]


OPTIONS = PodOptions()
CATALOG: Catalog = load_catalog()
ALL_MODELS = [model.id for model in CATALOG.models]


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    container: dict[str, Any] = containers[0]
    return container


@pytest.mark.parametrize("model_id", ALL_MODELS)
def test_deployment_for_every_known_model(make_workload: WorkloadFactory, model_id: str) -> None:
    workload = make_workload(model_id)
    deployment = build_deployment(workload, OPTIONS)
    container = _container(deployment)
    tier = workload.placement.tier
    known = CATALOG.model(model_id)
    assert known is not None
    assert container["image"] == (known.image or CATALOG.families[workload.placement.family].image)
    env = {item["name"]: item["value"] for item in container["env"]}
    assert env["MODEL_ID"] == model_id
    assert env["TASK"] == workload.placement.task
    assert env["PORT"] == "8000"
    assert env["HF_HOME"] == OPTIONS.cache_dir
    assert container["resources"]["limits"]["nvidia.com/gpu"] == str(tier.gpus)
    assert container["resources"]["requests"]["memory"] == tier.memory
    assert "replicas" not in deployment["spec"]
    assert all(is_label_value(value) for value in deployment["metadata"]["labels"].values())


@pytest.mark.parametrize("probe", ["startupProbe", "readinessProbe", "livenessProbe"])
def test_probes_hit_health(make_workload: WorkloadFactory, probe: str) -> None:
    container = _container(build_deployment(make_workload(), OPTIONS))
    assert container[probe]["httpGet"] == {"path": "/health", "port": "http"}
    assert container["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]


def test_startup_probe_covers_the_startup_budget(make_workload: WorkloadFactory) -> None:
    probe = _container(build_deployment(make_workload(), OPTIONS))["startupProbe"]
    assert probe["periodSeconds"] * probe["failureThreshold"] >= OPTIONS.startup_timeout_seconds


def test_startup_probe_runs_every_second(make_workload: WorkloadFactory) -> None:
    assert _container(build_deployment(make_workload(), OPTIONS))["startupProbe"]["periodSeconds"] == 1


def test_pod_security(make_workload: WorkloadFactory) -> None:
    deployment = build_deployment(make_workload(), OPTIONS)
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    security = _container(deployment)["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["runAsUser"] == 10001
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["readOnlyRootFilesystem"] is True
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    mounts = {mount["mountPath"]: mount["name"] for mount in _container(deployment)["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    for path in ("/tmp", OPTIONS.cache_dir):
        assert "emptyDir" in volumes[mounts[path]]


def test_gpu_scheduling(make_workload: WorkloadFactory) -> None:
    pod = build_deployment(make_workload(), OPTIONS)["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]


def test_cpu_tier_asks_for_no_gpu(tmp_path: Any) -> None:
    path = tmp_path / "cpu.yaml"
    path.write_text(
        "tiers: [{name: cpu, gpuMemoryGB: 1, gpus: 0, cpu: '1', memory: 2Gi, cache: 4Gi}]\ndefaultTier: cpu\n",
        encoding="utf-8",
    )
    from modelcluster.catalog import resolve
    from modelcluster.operator.builders.workload import Owner, Workload

    catalog = load_catalog([path])
    workload = Workload(Owner("x-1", "ns", "u"), resolve(catalog, "someone/tiny", "fill-mask"))
    deployment = build_deployment(workload, OPTIONS)
    pod = deployment["spec"]["template"]["spec"]
    assert "nodeSelector" not in pod and "tolerations" not in pod
    assert "nvidia.com/gpu" not in _container(deployment)["resources"]["limits"]
    assert {"name": "DEVICE", "value": "cpu"} in _container(deployment)["env"]


def test_draining(make_workload: WorkloadFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    deployment = build_deployment(make_workload(), OPTIONS)
    pod = deployment["spec"]["template"]["spec"]
    container = _container(deployment)
    grace = pod["terminationGracePeriodSeconds"]
    assert grace == OPTIONS.termination_grace_seconds == 330
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    # The runtime reads its drain timings from the pod's env: a stop that waits out the preStop sleep,
    # the drain delay and the longest request still ends before the grace period does.
    for item in container["env"]:
        monkeypatch.setenv(item["name"], item["value"])
    runtime = RuntimeSettings()
    assert runtime.drain_delay_s == OPTIONS.drain_delay_seconds > 0
    assert runtime.drain_timeout_s == runtime.request_timeout_s == OPTIONS.request_timeout_seconds
    assert 0 < pre_stop + runtime.drain_delay_s + runtime.drain_timeout_s < grace


def test_unready_runtime_leaves_endpoints_within_its_drain_delay(make_workload: WorkloadFactory) -> None:
    readiness = _container(build_deployment(make_workload(), OPTIONS))["readinessProbe"]
    noticed_within = readiness["periodSeconds"] * readiness["failureThreshold"]
    assert noticed_within <= 2 < OPTIONS.drain_delay_seconds


@pytest.mark.parametrize("build", [build_deployment, build_service], ids=["deployment", "service"])
def test_children_are_owned_and_labelled(make_workload: WorkloadFactory, build: Any) -> None:
    workload = make_workload("Qwen/Qwen2-7B-Instruct", name="qwen-qwen2-7b-instruct-1234abcd")
    body = build(workload, OPTIONS)
    metadata = body["metadata"]
    assert metadata["name"] == workload.name
    assert metadata["namespace"] == "tenant"
    (owner,) = metadata["ownerReferences"]
    assert owner == {
        "apiVersion": "modelcluster.dev/v1alpha1",
        "kind": "ModelCluster",
        "name": workload.name,
        "uid": "uid-1",
        "controller": True,
        "blockOwnerDeletion": True,
    }
    labels = metadata["labels"]
    for key in ("name", "instance", "component", "managed-by", "part-of"):
        assert f"app.kubernetes.io/{key}" in labels
    assert labels[MANAGED_BY] == "modelcluster-operator"
    assert labels[MODEL] == model_label_value("Qwen/Qwen2-7B-Instruct")
    assert metadata["annotations"]["modelcluster.dev/model-id"] == "Qwen/Qwen2-7B-Instruct"
    assert "finalizers" not in metadata


def test_selector_matches_pod_labels(make_workload: WorkloadFactory) -> None:
    workload = make_workload()
    deployment = build_deployment(workload, OPTIONS)
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector == selector_labels(workload.name)
    assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    assert build_service(workload, OPTIONS)["spec"]["selector"] == selector
    assert selector_string(workload.name) == ",".join(f"{k}={v}" for k, v in selector.items())


def test_service(make_workload: WorkloadFactory) -> None:
    service = build_service(make_workload(), OPTIONS)
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"][0]["port"] == 8000
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert service_endpoint("gpt2-abc", "tenant", 8000) == "http://gpt2-abc.tenant.svc:8000"


@pytest.mark.parametrize(
    ("capacity", "replicas"),
    [({}, 1), ({"desired": 3, "max": 5}, 3), ({"min": 2, "desired": 2}, 2), ({"desired": 0, "max": 2}, 0)],
)
def test_desired_replicas(capacity: dict[str, int], replicas: int) -> None:
    spec = ModelClusterSpec.model_validate({"model": "a/b", "capacity": capacity})
    assert desired_replicas(spec, None) == replicas


def test_replicas_apply_carries_only_replicas() -> None:
    body = build_replicas_apply("n", "ns", 4)
    assert body == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "n", "namespace": "ns"},
        "spec": {"replicas": 4},
    }
    assert REPLICAS_FIELD_MANAGER != "modelcluster-operator"


def test_builders_are_pure(make_workload: WorkloadFactory) -> None:
    workload = make_workload()
    assert build_deployment(workload, OPTIONS) == build_deployment(workload, OPTIONS)
    first = build_deployment(workload, OPTIONS)
    first["spec"]["template"]["metadata"]["labels"]["x"] = "y"
    assert "x" not in build_deployment(workload, OPTIONS)["metadata"]["labels"]
