"""Graceful drain: scaling down while streams are open loses none of them.

Two real runtime pods serve the tiny chat model; 20 long streams go through the gateway; the
cluster is scaled down to one replica while they run. The leaving pod drops out of routing,
turns unready on SIGTERM and finishes every stream it has before it exits.
"""

from __future__ import annotations

import threading
from typing import Any

import httpx
import pytest
from kubernetes import client as k8s

from modelcluster.api.naming import object_name
from modelcluster.devcluster.tiny_models import MODEL_ID as TINY_CHAT

from support import Cluster, GatewayProcess, Tenant, create_key, eventually, modelcluster_body

pytestmark = pytest.mark.cluster
GROUP, VERSION, PLURAL = "modelcluster.dev", "v1alpha1", "modelclusters"
NAME = object_name(TINY_CHAT)
TOKENS = 1500


def test_scaling_down_during_20_streams_loses_none(cluster: Cluster, gateway: GatewayProcess, tenant: Tenant) -> None:
    if cluster.local is None:
        pytest.skip("needs the local control plane's process-backed pods")
    ns = tenant.namespace
    objects = k8s.CustomObjectsApi(cluster.api_client)
    body = modelcluster_body(TINY_CHAT, capacity={"min": 2, "desired": 2, "max": 2}, timeout=600)
    objects.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, body)

    def status() -> dict[str, Any]:
        found: dict[str, Any] = objects.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, NAME)
        return found.get("status") or {}

    eventually(lambda: status().get("readyReplicas") == 2, timeout=300, interval=1, what="two ready pods")
    wide = Tenant(ns, create_key(cluster, ns, concurrency=64))
    eventually(
        lambda: httpx.get(f"{gateway.url}/models/v2/list/tasks", headers=wide.headers, timeout=5).status_code == 200,
        timeout=30,
        what="the new key",
    )
    started = threading.Barrier(21)
    results: list[tuple[int, str]] = []

    def stream(i: int) -> None:
        params = {"max_new_tokens": TOKENS, "min_new_tokens": TOKENS}
        request = {"input": f"story {i}", "stream": True, "params": params}
        url = f"{gateway.url}/models/v2/{TINY_CHAT}"
        with httpx.stream("POST", url, headers=wide.headers, json=request, timeout=600) as response:
            chunks = response.iter_text()
            first = next(chunks, "")
            started.wait(timeout=300)
            results.append((response.status_code, first + "".join(chunks)))

    threads = [threading.Thread(target=stream, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    started.wait(timeout=300)  # every stream is open and has sent its first text
    objects.patch_namespaced_custom_object(
        GROUP, VERSION, ns, PLURAL, NAME, {"spec": {"capacity": {"min": 1, "desired": 1, "max": 1}}}
    )
    eventually(lambda: cluster.apps.read_namespaced_deployment(NAME, ns).spec.replicas == 1, timeout=90, what="1")
    for thread in threads:
        thread.join(timeout=600)
    assert len(results) == 20
    for code, text in results:
        assert code == 200
        assert text and "[error]" not in text
    pods = cluster.core.list_namespaced_pod(ns, label_selector=f"app.kubernetes.io/instance={NAME}").items
    eventually(
        lambda: (
            len(cluster.core.list_namespaced_pod(ns, label_selector=f"app.kubernetes.io/instance={NAME}").items) == 1
        ),
        timeout=400,
        what="the leaving pod to finish and go",
    )
    assert pods
