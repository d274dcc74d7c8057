"""Serverless serving through the gateway with real runtime pods: wake on request, streaming, cancellation."""

from __future__ import annotations

import re
import threading
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from modelcluster.api.naming import object_name
from modelcluster.devcluster.offline_models import MODEL_ID as MINILM
from modelcluster.devcluster.tiny_models import MODEL_ID as TINY_CHAT

from support import Cluster, GatewayProcess, Tenant, create_key, eventually, pod_credential

pytestmark = pytest.mark.cluster
START_TIMEOUT = 240  # a runtime process imports torch and loads its model on a 2-core machine


def api(gateway: GatewayProcess, tenant: Tenant, method: str, path: str, **kwargs: Any) -> httpx.Response:
    kwargs.setdefault("timeout", 30)
    return httpx.request(method, f"{gateway.url}/models/v2/{path}", headers=tenant.headers, **kwargs)


def metric(text: str, name: str, namespace: str, model: str) -> float | None:
    pattern = rf'^{name}{{model="{re.escape(object_name(model))}",namespace="{namespace}"}} (\S+)$'
    found = re.search(pattern, text, re.MULTILINE)
    return float(found.group(1)) if found else None


def pod_addresses(cluster: Cluster, namespace: str, model: str) -> list[str]:
    pods = cluster.core.list_namespaced_pod(
        namespace, label_selector=f"app.kubernetes.io/instance={object_name(model)}"
    ).items
    return [pod.status.pod_ip for pod in pods if pod.status.pod_ip]


def test_a_stopped_cluster_is_woken_once_and_answers_every_held_request(
    cluster: Cluster, gateway: GatewayProcess, tenant: Tenant
) -> None:
    if cluster.local is None:
        pytest.skip("needs the local control plane's process-backed pods")
    created = api(gateway, tenant, "PUT", MINILM, json={"capacity": {"desired": 0, "max": 1}})
    assert created.status_code == 201, created.text
    eventually(
        lambda: api(gateway, tenant, "GET", MINILM).json()["cluster"]["status"] == "stopped",
        timeout=30,
        what="the cluster to be stopped",
    )
    answers: list[httpx.Response] = []

    def ask(index: int) -> None:
        answers.append(api(gateway, tenant, "POST", MINILM, json={"text": f"sentence {index}"}, timeout=START_TIMEOUT))

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(10)]
    for thread in threads:
        thread.start()
    eventually(
        lambda: (metric(gateway.metrics(), "modelcluster_gateway_held_requests", tenant.namespace, MINILM) or 0) >= 1,
        timeout=30,
        what="held requests",
    )
    phases = {api(gateway, tenant, "GET", MINILM).json()["cluster"]["status"]}
    for thread in threads:
        thread.join(timeout=START_TIMEOUT + 10)
    assert len(answers) == 10
    for answer in answers:
        assert answer.status_code == 200, answer.text
        vector = answer.json()["output"]
        assert len(vector) == 384 and all(isinstance(x, float) for x in vector)
    text = gateway.metrics()
    assert metric(text, "modelcluster_gateway_wakes_total", tenant.namespace, MINILM) == 1.0
    assert metric(text, "modelcluster_gateway_outstanding_requests", tenant.namespace, MINILM) == 0.0
    assert metric(text, "modelcluster_gateway_held_requests", tenant.namespace, MINILM) == 0.0
    assert (metric(text, "modelcluster_gateway_last_request_timestamp_seconds", tenant.namespace, MINILM) or 0) > 0
    phases.add(
        eventually(
            lambda: (s := api(gateway, tenant, "GET", MINILM).json()["cluster"]["status"]) == "running" and s,
            timeout=30,
            what="status running",
        )
    )
    assert phases <= {"stopped", "deploying", "running"} and "running" in phases
    view = api(gateway, tenant, "GET", MINILM).json()["cluster"]
    assert view["readyReplicas"] == 1 and view["lastRequestTime"]


def test_streams_pass_through_and_a_client_that_leaves_stops_the_generation(
    cluster: Cluster, gateway: GatewayProcess, tenant: Tenant
) -> None:
    if cluster.local is None:
        pytest.skip("needs the local control plane's process-backed pods")
    # The first request creates the cluster (serverless default) and waits for its pod.
    first = api(
        gateway, tenant, "POST", TINY_CHAT, json={"input": "hi", "params": {"max_new_tokens": 4}}, timeout=START_TIMEOUT
    )
    assert first.status_code == 200, first.text
    assert first.json()["output"]["role"] == "assistant"

    body = {"input": "hello", "stream": True, "params": {"max_new_tokens": 8}}
    with httpx.stream("POST", f"{gateway.url}/models/v2/{TINY_CHAT}", headers=tenant.headers, json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        chunks = [chunk for chunk in response.iter_text() if chunk]
    assert chunks and "".join(chunks).strip()

    with httpx.stream(
        "POST", f"{gateway.url}/models/v2/{TINY_CHAT}", headers={**tenant.headers, "Accept": "text/event-stream"},
        json=body,
    ) as response:  # fmt: skip
        events = [line for line in response.iter_lines() if line]
    assert events[-1] == "data: [DONE]" and events[0].startswith("data: {")

    (address,) = pod_addresses(cluster, tenant.namespace, TINY_CHAT)
    credential = pod_credential(cluster, tenant.namespace, object_name(TINY_CHAT))

    def cancelled() -> float:
        text = httpx.get(f"http://{address}:8000/metrics", headers=credential, timeout=5).text
        found = re.search(r"^modelcluster_runtime_streams_cancelled_total (\S+)$", text, re.MULTILINE)
        return float(found.group(1)) if found else 0.0

    before = cancelled()
    long = {"input": "hello", "stream": True, "params": {"max_new_tokens": 3000, "min_new_tokens": 3000}}
    with httpx.stream("POST", f"{gateway.url}/models/v2/{TINY_CHAT}", headers=tenant.headers, json=long) as response:
        assert response.status_code == 200
        next(response.iter_bytes())  # the stream has started; now the client goes away
    eventually(lambda: cancelled() > before, timeout=30, what="the runtime to see the disconnect and stop")
    eventually(
        lambda: (
            metric(gateway.metrics(), "modelcluster_gateway_outstanding_requests", tenant.namespace, TINY_CHAT) == 0.0
        ),
        timeout=10,
        what="the gateway's count to return to zero",
    )


def test_least_outstanding_spreads_a_burst_and_counters_return_to_zero(
    cluster: Cluster, gateway: GatewayProcess, tenant: Tenant
) -> None:
    if cluster.local is None:
        pytest.skip("needs the local control plane's process-backed pods")
    created = api(gateway, tenant, "PUT", MINILM, json={"capacity": {"min": 2, "desired": 2, "max": 2}})
    assert created.status_code == 201, created.text
    eventually(
        lambda: api(gateway, tenant, "GET", MINILM).json()["cluster"]["readyReplicas"] == 2,
        timeout=START_TIMEOUT,
        interval=1.0,
        what="two ready pods",
    )
    credential = pod_credential(cluster, tenant.namespace, object_name(MINILM))
    served_before = {
        address: served(address, credential) for address in pod_addresses(cluster, tenant.namespace, MINILM)
    }
    assert len(served_before) == 2
    wide = Tenant(tenant.namespace, create_key(cluster, tenant.namespace, concurrency=64))  # 40 at once
    eventually(lambda: api(gateway, wide, "GET", "list/tasks").status_code == 200, timeout=30, what="the new key")
    answers: list[int] = []
    threads = [
        threading.Thread(
            target=lambda i=i: answers.append(
                api(gateway, wide, "POST", MINILM, json={"text": f"burst {i}"}, timeout=60).status_code
            )
        )
        for i in range(40)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=90)
    assert answers == [200] * 40
    counts = [served(address, credential) - before for address, before in served_before.items()]
    assert sum(counts) == 40 and min(counts) >= 10, counts
    assert metric(gateway.metrics(), "modelcluster_gateway_outstanding_requests", tenant.namespace, MINILM) == 0.0


def served(address: str, credential: dict[str, str]) -> float:
    text = httpx.get(f"http://{address}:8000/metrics", headers=credential, timeout=5).text
    found = re.search(r'^modelcluster_runtime_requests_total\{status="200"\} (\S+)$', text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def collections(gateway: GatewayProcess) -> dict[str, float]:
    """``python_gc_collections_total`` by generation, from the gateway's /metrics."""
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(gateway.metrics()):
        if family.name == "python_gc_collections":
            counts.update((sample.labels["generation"], sample.value) for sample in family.samples)
    return counts


def test_inference_traffic_leaves_the_garbage_collector_idle(
    cluster: Cluster, gateway: GatewayProcess, tenant: Tenant
) -> None:
    """The start-up heap is frozen and the young generation's threshold raised (gateway/heap.py): with Python's
    defaults, 16 requests in flight make the gateway collect its young generation many times a second, and the
    whole heap every few seconds (a pause of tens of milliseconds each on this machine)."""
    if cluster.local is None:
        pytest.skip("needs the local control plane's process-backed pods")
    created = api(gateway, tenant, "PUT", MINILM, json={"capacity": {"min": 1, "desired": 1, "max": 1}})
    assert created.status_code == 201, created.text
    eventually(
        lambda: api(gateway, tenant, "GET", MINILM).json()["cluster"]["readyReplicas"] == 1,
        timeout=START_TIMEOUT,
        interval=1.0,
        what="a ready pod",
    )
    wide = Tenant(tenant.namespace, create_key(cluster, tenant.namespace, concurrency=64))
    eventually(lambda: api(gateway, wide, "GET", "list/tasks").status_code == 200, timeout=30, what="the new key")
    before = collections(gateway)
    assert set(before) == {"0", "1", "2"}
    statuses: list[int] = []

    def ask(count: int) -> None:
        with httpx.Client(base_url=f"{gateway.url}/models/v2/", headers=wide.headers, timeout=60) as client:
            statuses.extend(client.post(MINILM, json={"text": "a sentence"}).status_code for _ in range(count))

    threads = [threading.Thread(target=ask, args=(40,)) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=180)
    assert statuses == [200] * 640
    after = collections(gateway)
    # At most one young collection: the count left by the session's earlier requests may just cross the threshold.
    assert after["0"] - before["0"] <= 1, (before, after)
    assert after["2"] == before["2"], (before, after)
