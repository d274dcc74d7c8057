"""A model that cannot load: the runtime exits with the cause, the pod restarts, the status says why at once."""

from __future__ import annotations

import time
from typing import Any

import pytest
from kubernetes import client as k8s

from modelcluster.api.exit_codes import MODEL_LOAD_FAILED_EXIT_CODE
from modelcluster.api.naming import object_name

from support import Cluster, OperatorProcess, eventually, modelcluster_body

pytestmark = pytest.mark.cluster

GROUP, VERSION, PLURAL = "modelcluster.dev", "v1alpha1", "modelclusters"
#: Reported within this many seconds of the first failure, not after the restart back-off.
REPORT_WITHIN_S = 30


def status_of(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    body = k8s.CustomObjectsApi(cluster.api_client).get_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name
    )
    status: dict[str, Any] = body.get("status") or {}
    return status


def test_a_model_that_cannot_load_is_failed_with_the_runtimes_message_within_seconds(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    if cluster.local is None or not cluster.local.pod_commands:
        pytest.skip("needs the local cluster's process-backed runtime pods")
    # The text runtime runs as a real process here, offline: a model outside its hub cache cannot load.
    model = "acme/missing-embedder"
    name = object_name(model)
    body = modelcluster_body(model, task="feature-extraction")
    k8s.CustomObjectsApi(cluster.api_client).create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)

    def first_failure() -> Any:
        pods = cluster.core.list_namespaced_pod(namespace, label_selector=f"app.kubernetes.io/instance={name}").items
        for pod in pods:
            for container in pod.status.container_statuses or []:
                terminated = container.last_state.terminated if container.last_state else None
                if terminated is not None:
                    return terminated
        return None

    terminated = eventually(first_failure, timeout=240, interval=0.5, what="the runtime's first exit")
    seen_at = time.monotonic()
    assert terminated.exit_code == MODEL_LOAD_FAILED_EXIT_CODE
    assert terminated.message, "the runtime wrote the cause to its termination message"
    assert model in terminated.message

    status = eventually(
        lambda: (s := status_of(cluster, namespace, name)).get("reason") == "ModelLoadFailed" and s,
        timeout=REPORT_WITHIN_S,
        interval=0.5,
        what="status failed with reason ModelLoadFailed",
    )
    assert time.monotonic() - seen_at <= REPORT_WITHIN_S
    assert status["status"] == "failed"
    assert terminated.message.strip() in status["message"]
    degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
    assert degraded["reason"] == "ModelLoadFailed"
