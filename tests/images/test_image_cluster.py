"""The images on the local cluster, run by runc: the Helm chart's control plane and a text runtime woken from zero.

The chart installs the control-plane image (operator and gateway pods); the pod runner runs that image in each
pod's network namespace with the pod's env, args, securityContext, ServiceAccount token and catalog ConfigMap.
The operator of the image then deploys all-MiniLM-L6-v2, whose pod runs the text runtime image over the offline
model cache, woken by a request through the gateway of the image.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from modelcluster.api.naming import object_name
from modelcluster.devcluster import podnet
from modelcluster.devcluster.images.runc import state_root
from modelcluster.devcluster.offline_models import MODEL_ID as MINILM
from modelcluster.devcluster.tools import ensure_tools

from support import Cluster, drop_namespace, eventually

pytestmark = pytest.mark.cluster
CHART = Path(__file__).resolve().parents[2] / "charts" / "modelcluster"
READY_DEADLINE = 180
START_TIMEOUT = 300  # the runtime image imports torch and loads its model on a 2-core machine


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(ensure_tools().helm), *args], capture_output=True, text=True, timeout=180)


def runc_containers() -> dict[str, str]:
    """Containers runc runs for the pod runner: name -> status."""
    done = subprocess.run(
        ["runc", "--root", str(state_root() / "state"), "list", "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
    )
    return {item["id"]: item["status"] for item in json.loads(done.stdout or "[]") or []}


def run_by_runc(cluster: Cluster, pod: k8s.V1Pod) -> bool:
    assert cluster.local is not None
    prefix = podnet.namespace_name(cluster.local, pod.metadata.uid)
    return any(name.startswith(prefix) and status == "running" for name, status in runc_containers().items())


def report_state(cluster: Cluster, namespaces: tuple[str, ...]) -> None:
    """Print what a failure needs to be understood: the ModelClusters, Deployments and pods, and the pods' logs."""
    assert cluster.local is not None
    objects = k8s.CustomObjectsApi(cluster.api_client)
    for namespace in namespaces:
        with contextlib.suppress(ApiException):
            for item in objects.list_namespaced_custom_object(
                "modelcluster.dev", "v1alpha1", namespace, "modelclusters"
            )["items"]:
                print(f"ModelCluster {namespace}/{item['metadata']['name']}: {json.dumps(item.get('status'))}")
        with contextlib.suppress(ApiException):
            for deployment in cluster.apps.list_namespaced_deployment(namespace).items:
                spec, status = deployment.spec, deployment.status
                print(f"Deployment {namespace}/{deployment.metadata.name}: spec {spec.replicas}, status {status}")
        with contextlib.suppress(ApiException):
            for pod in cluster.core.list_namespaced_pod(namespace).items:
                print(f"Pod {namespace}/{pod.metadata.name}: {pod.status.phase}")
    for log in sorted((cluster.local.state_dir / "pods").glob("*.log")):
        if log.name.startswith(namespaces):
            print(f"--- {log.name}\n{log.read_text(errors='replace')[-8000:]}")


def ready(pod: k8s.V1Pod) -> bool:
    conditions = pod.status.conditions or []
    return pod.status.phase == "Running" and any(c.type == "Ready" and c.status == "True" for c in conditions)


@pytest.fixture
def release_namespace(cluster: Cluster) -> Iterator[str]:
    name = f"mci-{uuid.uuid4().hex[:8]}"
    yield name
    drop_namespace(cluster.core, name)


@pytest.fixture
def tenant_namespace(cluster: Cluster) -> Iterator[str]:
    name = f"tenant-{uuid.uuid4().hex[:8]}"  # the chart's bootstrap key makes it
    yield name
    drop_namespace(cluster.core, name)


def test_the_chart_runs_the_control_plane_image_and_the_text_image_wakes_from_zero(
    built_images: tuple[str, str], cluster: Cluster, release_namespace: str, tenant_namespace: str
) -> None:
    assert cluster.local is not None and cluster.local.run_images, "the image tier runs on the local cluster"
    release = "mc"
    key = f"mc_{secrets.token_hex(6)}_{secrets.token_urlsafe(32)}"
    kube = [f"--kubeconfig={cluster.kubeconfig}", f"--namespace={release_namespace}"]
    values = [
        "--set=gateway.replicas=1",
        "--set=bootstrapKey.enabled=true",
        "--set=bootstrapKey.existingSecret=first-key",
        f"--set=bootstrapKey.tenant={tenant_namespace}",
    ]
    # The bootstrap key from a Secret of the administrator's, never from the values.
    cluster.core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=release_namespace)))
    first_key = k8s.V1Secret(metadata=k8s.V1ObjectMeta(name="first-key"), string_data={"key": key})
    cluster.core.create_namespaced_secret(release_namespace, first_key)
    installed = helm("install", release, str(CHART), *kube, *values)
    assert installed.returncode == 0, installed.stderr
    try:
        selector = f"app.kubernetes.io/instance={release}"

        def all_ready() -> list[k8s.V1Pod] | None:
            pods = cluster.core.list_namespaced_pod(release_namespace, label_selector=selector).items
            names = {pod.metadata.labels["app.kubernetes.io/name"] for pod in pods if ready(pod)}
            return pods if names == {"modelcluster-operator", "modelcluster-gateway"} else None

        pods = eventually(all_ready, timeout=READY_DEADLINE, interval=1.0, what="the operator and gateway pods Ready")
        by_name = {pod.metadata.labels["app.kubernetes.io/name"]: pod for pod in pods}
        for pod in pods:
            assert run_by_runc(cluster, pod), f"{pod.metadata.name} is not a runc container"
        operator, gateway = by_name["modelcluster-operator"], by_name["modelcluster-gateway"]
        lease = k8s.CoordinationV1Api(cluster.api_client).read_namespaced_lease(
            f"{release}-modelcluster-operator", release_namespace
        )
        assert lease.spec.holder_identity == operator.metadata.name

        base = f"http://{gateway.status.pod_ip}:8080/models/v2"
        headers = {"Authorization": f"Key {key}"}
        assert httpx.get(f"{base}/list/tasks", timeout=10).status_code == 401
        tasks = httpx.get(f"{base}/list/tasks", headers=headers, timeout=10)
        assert tasks.status_code == 200 and tasks.json()["error"] is None, tasks.text

        created = httpx.put(
            f"{base}/{MINILM}", headers=headers, json={"capacity": {"desired": 0, "max": 1}}, timeout=30
        )
        assert created.status_code == 201, created.text

        def stopped() -> bool:
            cluster_json = httpx.get(f"{base}/{MINILM}", headers=headers, timeout=10).json()["cluster"]
            print(f"the gateway shows the cluster as {json.dumps(cluster_json)}")
            return bool(cluster_json["status"] == "stopped")

        eventually(stopped, timeout=120, interval=1.0, what="the cluster stopped (scaled to zero)")
        answers: list[httpx.Response] = []
        asking = threading.Thread(
            target=lambda: answers.append(
                httpx.post(f"{base}/{MINILM}", headers=headers, json={"text": "a cat"}, timeout=START_TIMEOUT)
            )
        )
        asking.start()
        asking.join(timeout=START_TIMEOUT + 10)
        assert len(answers) == 1
        assert answers[0].status_code == 200, answers[0].text
        vector = answers[0].json()["output"]
        assert len(vector) == 384 and all(isinstance(x, float) for x in vector)

        # The gateway routes on the pod's first healthy answer, before the kubelet's probe marks it Ready.
        def model_pod_ready() -> list[k8s.V1Pod] | None:
            found = cluster.core.list_namespaced_pod(
                tenant_namespace, label_selector=f"app.kubernetes.io/instance={object_name(MINILM)}"
            ).items
            return found if len(found) == 1 and ready(found[0]) else None

        model_pods = eventually(model_pod_ready, timeout=60, interval=0.5, what="the model pod Ready")
        assert run_by_runc(cluster, model_pods[0]), "the model pod is not a runc container of the runtime image"
    except AssertionError:
        report_state(cluster, (release_namespace, tenant_namespace))
        raise
    finally:
        # The operator of the release removes the model's objects (and its finalizer) before it goes.
        objects = k8s.CustomObjectsApi(cluster.api_client)
        with contextlib.suppress(ApiException):
            objects.delete_namespaced_custom_object(
                "modelcluster.dev", "v1alpha1", tenant_namespace, "modelclusters", object_name(MINILM)
            )
        eventually(
            lambda: (
                not objects.list_namespaced_custom_object(
                    "modelcluster.dev", "v1alpha1", tenant_namespace, "modelclusters"
                )["items"]
            ),
            timeout=60,
            what="the ModelCluster deleted",
        )
        # No --wait: the tenant namespace the chart made waits on its model pod's grace period (tests/integration
        # covers a complete uninstall).
        uninstalled = helm("uninstall", release, *kube)
    assert uninstalled.returncode == 0, uninstalled.stderr
