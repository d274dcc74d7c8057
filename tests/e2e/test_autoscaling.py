"""Serverless behaviour end to end: scale on queue depth, back to desired, idle teardown, wake, restart safety.

Real runtime processes serve all-MiniLM-L6-v2 in the pods; load goes through the gateway.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from kubernetes import client as k8s

from modelcluster.api.naming import object_name
from modelcluster.devcluster.offline_models import MODEL_ID as MINILM

from support import Cluster, GatewayProcess, OperatorProcess, Tenant, create_key, eventually, modelcluster_body

pytestmark = pytest.mark.cluster
GROUP, VERSION, PLURAL = "modelcluster.dev", "v1alpha1", "modelclusters"
NAME = object_name(MINILM)
START_TIMEOUT = 300
SENTENCES = [f"sentence number {i} about cats, dogs and the weather in the city" for i in range(48)]


def create(cluster: Cluster, namespace: str, spec: dict[str, Any]) -> None:
    body = modelcluster_body(MINILM, spec=spec)
    k8s.CustomObjectsApi(cluster.api_client).create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)


def replicas(cluster: Cluster, namespace: str) -> int:
    deployment = cluster.apps.read_namespaced_deployment(NAME, namespace)
    return int(deployment.spec.replicas or 0)


def status(cluster: Cluster, namespace: str) -> dict[str, Any]:
    found: dict[str, Any] = k8s.CustomObjectsApi(cluster.api_client).get_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, NAME
    )
    return found.get("status") or {}


class Load:
    """Concurrent clients sending embedding requests through the gateway until stopped."""

    def __init__(self, gateway: GatewayProcess, tenant: Tenant, clients: int) -> None:
        self.url = f"{gateway.url}/models/v2/{MINILM}"
        self.headers = tenant.headers
        self.stop = threading.Event()
        self.codes: list[int] = []
        self.threads = [threading.Thread(target=self._client) for _ in range(clients)]

    def _client(self) -> None:
        with httpx.Client(timeout=START_TIMEOUT) as http:
            while not self.stop.is_set():
                self.codes.append(http.post(self.url, headers=self.headers, json={"text": SENTENCES}).status_code)

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=START_TIMEOUT)


def within(seconds: float, probe: Callable[[], Any], what: str) -> float:
    """Seconds until ``probe`` holds (failing after ``seconds``)."""
    started = time.monotonic()
    eventually(probe, timeout=seconds, interval=0.5, what=what)
    return time.monotonic() - started


def test_scales_up_on_queue_depth_back_to_desired_then_to_zero_and_wakes_for_held_requests(
    cluster: Cluster, gateway: GatewayProcess, operator: OperatorProcess, tenant: Tenant
) -> None:
    if cluster.local is None:
        pytest.skip("needs the local control plane's process-backed pods")
    ns = tenant.namespace
    create(cluster, ns, {"capacity": {"min": 0, "desired": 1, "max": 3}, "timeout": 75, "targetPerReplica": 2})
    eventually(lambda: status(cluster, ns).get("readyReplicas") == 1, timeout=START_TIMEOUT, interval=1, what="1 ready")

    # (a) a burst scales it up (8 clients, 2 per replica -> max 3) and every request succeeds
    with Load(gateway, tenant, clients=8) as load:
        within(20, lambda: replicas(cluster, ns) == 3, "scale-up to max on queue depth")
        # (f) the operator killed mid-burst and restarted keeps the cluster scaled and its idle clock
        clock = eventually(lambda: status(cluster, ns).get("lastRequestTime"), timeout=15, what="idle clock written")
        operator.kill()
        operator.start()
        for _ in range(10):
            assert replicas(cluster, ns) == 3
            time.sleep(0.5)
        # a busy cluster's clock is written at most once a minute (no status-write storm), so it moves on within one
        eventually(lambda: status(cluster, ns).get("lastRequestTime", "") > clock, timeout=75, what="clock moving on")
        eventually(
            lambda: status(cluster, ns).get("readyReplicas") == 3, timeout=START_TIMEOUT, interval=1, what="3 ready"
        )
    assert load.codes and set(load.codes) == {200}, sorted(set(load.codes))
    last_request = time.monotonic()

    # (b) when the load stops it returns to desired (after the stabilization window)
    within(90, lambda: replicas(cluster, ns) == 1, "back to desired")
    # (c) after `timeout` seconds idle it goes to zero and `stopped`; the object stays
    within(120, lambda: replicas(cluster, ns) == 0, "teardown to zero")
    assert time.monotonic() - last_request >= 70
    eventually(lambda: status(cluster, ns).get("status") == "stopped", timeout=30, what="status stopped")

    # (d) 50 requests sent while it is stopped are all answered after it wakes (a key that allows 50 at once)
    wide = Tenant(ns, create_key(cluster, ns, concurrency=64))
    eventually(
        lambda: httpx.get(f"{gateway.url}/models/v2/list/tasks", headers=wide.headers, timeout=5).status_code == 200,
        timeout=30,
        what="the new key",
    )
    answers: list[httpx.Response] = []

    def ask(i: int) -> None:
        answers.append(
            httpx.post(
                f"{gateway.url}/models/v2/{MINILM}",
                headers=wide.headers,
                json={"text": f"wake {i}"},
                timeout=START_TIMEOUT,
            )
        )

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(50)]
    for thread in threads:
        thread.start()
    phases = set()
    deadline = time.monotonic() + START_TIMEOUT
    while any(thread.is_alive() for thread in threads) and time.monotonic() < deadline:
        phases.add(status(cluster, ns).get("status"))
        time.sleep(0.5)
    for thread in threads:
        thread.join(timeout=5)
    assert [a.status_code for a in answers] == [200] * 50
    assert all(len(a.json()["output"]) == 384 for a in answers)
    assert "deploying" in phases or "stopped" in phases
    eventually(lambda: status(cluster, ns).get("status") == "running", timeout=30, what="running again")
