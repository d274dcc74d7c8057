"""Whole system: a ModelCluster becomes a pod running the real model runtime, which serves embeddings."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from kubernetes import client as k8s

from modelcluster.api.naming import object_name
from modelcluster.devcluster.offline_models import MODEL_ID

from support import Cluster, OperatorProcess, eventually, modelcluster_body, pod_credential

pytestmark = pytest.mark.cluster
GROUP, VERSION, PLURAL = "modelcluster.dev", "v1alpha1", "modelclusters"


def test_model_cluster_serves_embeddings_from_a_real_runtime_pod(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    if cluster.local is None:
        pytest.skip("needs the local control plane's process-backed pods (the runtime image is not pulled here)")
    name = object_name(MODEL_ID)
    objects = k8s.CustomObjectsApi(cluster.api_client)
    body = modelcluster_body(MODEL_ID, capacity={"desired": 1, "max": 1})
    objects.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)

    def status() -> dict[str, Any]:
        found: dict[str, Any] = objects.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        return found.get("status") or {}

    eventually(lambda: status().get("status") == "deploying", timeout=30, what="status deploying")
    # Ready only once the runtime has loaded the model and /health answers 200.
    eventually(lambda: status().get("status") == "running", timeout=180, interval=1.0, what="status running")
    assert status()["readyReplicas"] == 1

    pods = cluster.core.list_namespaced_pod(namespace, label_selector=f"app.kubernetes.io/instance={name}").items
    assert len(pods) == 1
    address = pods[0].status.pod_ip
    assert pods[0].spec.node_name.startswith(("gpu-node-", "gpu-24gb-node-")), "a GPU node (either size fits it)"

    health = httpx.get(f"http://{address}:8000/health", timeout=5)
    assert health.status_code == 200
    # The pod answers only its cluster's credential (what the gateway presents); tests/security checks refusals.
    credential = pod_credential(cluster, namespace, name)
    answer = httpx.post(
        f"http://{address}:8000/run",
        headers=credential,
        json={"text": ["a cat sits on the mat", "a kitten rests on a rug", "stock markets fell sharply"]},
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    payload = answer.json()
    assert payload["error"] is None
    cat, kitten, stocks = payload["output"]
    assert len(cat) == 384

    def cosine(a: list[float], b: list[float]) -> float:
        dot = sum(x * y for x, y in zip(a, b, strict=True))
        return dot / ((sum(x * x for x in a) ** 0.5) * (sum(y * y for y in b) ** 0.5))

    assert cosine(cat, kitten) > cosine(cat, stocks)

    bad = httpx.post(f"http://{address}:8000/run", headers=credential, json={"text": 42}, timeout=10)
    assert bad.status_code == 422
    assert bad.json()["output"] is None
    assert bad.json()["error"]
