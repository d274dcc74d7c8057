"""The local control plane behaves like a real cluster with GPU nodes."""

from __future__ import annotations

import ipaddress
import os
import signal
import subprocess
from typing import Any

import httpx
import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from modelcluster.devcluster import podnet

from support import Cluster, eventually

pytestmark = pytest.mark.cluster

GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
ECHO_IMAGE = "modelcluster.dev/test/echo:1"


def deployment(
    name: str, replicas: int, container: dict[str, Any], tolerations: list[dict[str, str]]
) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [container], "tolerations": tolerations, "terminationGracePeriodSeconds": 2},
            },
        },
    }


def gpu_container(gpus: int) -> dict[str, Any]:
    return {"name": "main", "image": "example.test/gpu-job:1", "resources": {"limits": {"nvidia.com/gpu": str(gpus)}}}


def test_gpu_deployment_becomes_ready_on_gpu_nodes(cluster: Cluster, namespace: str) -> None:
    cluster.apps.create_namespaced_deployment(namespace, deployment("gpu", 3, gpu_container(1), [GPU_TOLERATION]))

    def ready() -> int | None:
        status = cluster.apps.read_namespaced_deployment_status("gpu", namespace).status
        return status.ready_replicas if status.ready_replicas == 3 else None

    eventually(ready, what="3 ready replicas")
    pods = cluster.core.list_namespaced_pod(namespace, label_selector="app=gpu").items
    assert len(pods) == 3
    for pod in pods:
        node = cluster.core.read_node(pod.spec.node_name)
        assert node.metadata.labels["nvidia.com/gpu.present"] == "true"
        assert any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions)


def test_pod_asking_for_too_many_gpus_stays_pending(cluster: Cluster, namespace: str) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "greedy"},
        "spec": {"containers": [gpu_container(99)], "tolerations": [GPU_TOLERATION]},
    }
    cluster.core.create_namespaced_pod(namespace, pod)

    def failed_scheduling() -> list[k8s.CoreV1Event]:
        events = cluster.core.list_namespaced_event(namespace, field_selector="involvedObject.name=greedy").items
        return [e for e in events if e.reason == "FailedScheduling"]

    events = eventually(failed_scheduling, what="a FailedScheduling event")
    assert "Insufficient nvidia.com/gpu" in events[0].message
    assert events[0].source.component == "default-scheduler" or events[0].reporting_component == "default-scheduler"
    current = cluster.core.read_namespaced_pod("greedy", namespace)
    assert current.status.phase == "Pending"
    assert current.spec.node_name is None


def test_deleting_a_deployment_collects_its_replicaset_and_pods(cluster: Cluster, namespace: str) -> None:
    cluster.apps.create_namespaced_deployment(namespace, deployment("gc", 2, gpu_container(1), [GPU_TOLERATION]))
    eventually(
        lambda: len(cluster.core.list_namespaced_pod(namespace, label_selector="app=gc").items) == 2, what="2 pods"
    )
    assert len(cluster.apps.list_namespaced_replica_set(namespace, label_selector="app=gc").items) == 1

    cluster.apps.delete_namespaced_deployment("gc", namespace)

    eventually(
        lambda: not cluster.apps.list_namespaced_replica_set(namespace, label_selector="app=gc").items,
        what="the ReplicaSet to be collected",
    )
    eventually(
        lambda: not cluster.core.list_namespaced_pod(namespace, label_selector="app=gc").items,
        what="the pods to be collected",
    )


WIDGET_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.celtest.modelcluster.dev"},
    "spec": {
        "group": "celtest.modelcluster.dev",
        "names": {"kind": "Widget", "plural": "widgets", "singular": "widget"},
        "scope": "Namespaced",
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "properties": {"low": {"type": "integer"}, "high": {"type": "integer"}},
                                "x-kubernetes-validations": [
                                    {"rule": "self.low <= self.high", "message": "low must not exceed high"}
                                ],
                            }
                        },
                    }
                },
            }
        ],
    },
}


def test_crd_cel_rule_rejects_bad_object(cluster: Cluster, namespace: str) -> None:
    extensions = k8s.ApiextensionsV1Api(cluster.api_client)
    try:
        extensions.create_custom_resource_definition(WIDGET_CRD)
    except ApiException as error:
        if error.status != 409:
            raise

    def established() -> bool:
        crd = extensions.read_custom_resource_definition(WIDGET_CRD["metadata"]["name"])
        return any(c.type == "Established" and c.status == "True" for c in crd.status.conditions or [])

    eventually(established, what="the CRD to be established")
    objects = k8s.CustomObjectsApi(cluster.api_client)
    group, version, plural = "celtest.modelcluster.dev", "v1", "widgets"

    def create(name: str, low: int, high: int) -> dict[str, Any]:
        body = {
            "apiVersion": f"{group}/{version}",
            "kind": "Widget",
            "metadata": {"name": name},
            "spec": {"low": low, "high": high},
        }
        result: dict[str, Any] = objects.create_namespaced_custom_object(group, version, namespace, plural, body)
        return result

    # The discovery of a new CRD takes a moment; a good object goes through once it is served.
    eventually(lambda: _created(lambda: create("good", 1, 2)), what="the good object to be accepted")
    with pytest.raises(ApiException) as rejected:
        create("bad", 3, 2)
    assert rejected.value.status == 422
    assert "low must not exceed high" in rejected.value.body
    assert "spec" in rejected.value.body


def _created(action: Any) -> bool:
    try:
        action()
    except ApiException as error:
        if error.status == 404:
            return False
        raise
    return True


def test_process_backed_pod_serves_and_follows_its_probe(cluster: Cluster, namespace: str) -> None:
    if cluster.local is None:
        pytest.skip("process-backed pods are a feature of the local control plane, not of an external cluster")
    container = {
        "name": "echo",
        "image": ECHO_IMAGE,
        "args": ["8080"],
        "ports": [{"name": "http", "containerPort": 8080}],
        "env": [
            {"name": "GREETING", "value": "hello"},
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        ],
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 1, "failureThreshold": 1},
    }
    cluster.apps.create_namespaced_deployment(namespace, deployment("echo", 1, container, [GPU_TOLERATION]))
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "echo"},
        "spec": {"selector": {"app": "echo"}, "ports": [{"port": 80, "targetPort": "http"}]},
    }
    cluster.core.create_namespaced_service(namespace, service)

    def ready_pod() -> k8s.V1Pod | None:
        for pod in cluster.core.list_namespaced_pod(namespace, label_selector="app=echo").items:
            if any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or []):
                return pod
        return None

    pod = eventually(ready_pod, what="the echo pod to become Ready")
    address = pod.status.pod_ip
    assert ipaddress.ip_address(address) in cluster.local.process_pod_network
    answer = httpx.get(f"http://{address}:8080/", timeout=5.0).json()
    assert answer == {"pod": pod.metadata.name, "namespace": namespace, "greeting": "hello", "argv": ["8080"]}

    def ready_endpoints() -> set[str]:
        discovery = k8s.DiscoveryV1Api(cluster.api_client)
        slices = discovery.list_namespaced_endpoint_slice(
            namespace, label_selector="kubernetes.io/service-name=echo"
        ).items
        return {
            ip
            for item in slices
            for endpoint in item.endpoints or []
            if endpoint.conditions and endpoint.conditions.ready
            for ip in endpoint.addresses
        }

    eventually(lambda: address in ready_endpoints(), what="the pod address in the EndpointSlice")

    netns = podnet.namespace_name(cluster.local, pod.metadata.uid)
    pids = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True, check=True).stdout.split()
    assert pids, f"no process runs in {netns}"
    for pid in pids:
        os.kill(int(pid), signal.SIGKILL)

    def not_ready() -> bool:
        current = cluster.core.read_namespaced_pod(pod.metadata.name, namespace)
        return any(c.type == "Ready" and c.status == "False" for c in current.status.conditions)

    eventually(not_ready, timeout=20, what="the pod to turn NotReady")
    eventually(lambda: address not in ready_endpoints(), timeout=20, what="the endpoint to leave the ready set")
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://{address}:8080/", timeout=2.0)

    cluster.apps.delete_namespaced_deployment("echo", namespace)
    eventually(
        lambda: not cluster.core.list_namespaced_pod(namespace, label_selector="app=echo").items,
        timeout=30,
        what="the process-backed pod to be removed",
    )
    eventually(
        lambda: netns not in podnet.namespaces(cluster.local.netns_prefix) if cluster.local else True,
        timeout=10,
        what="the pod's network namespace to be removed",
    )
