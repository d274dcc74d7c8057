"""The warm pool end to end: a woken cluster borrows a standby, hands over to its own pod, and the pool refills.

An operator with one llm standby in the tenant's namespace; real runtime processes serve the tiny chat model. The
cluster is stopped; 50 requests and 20 streaming clients arrive at once. The borrowed standby answers them while the
cluster's own pod starts; once that pod is Ready the standby is deleted and drains, the streams (each client opens
stream after stream until the hand-over is done) all finish, and a new standby fills the pool. Then a standby whose
load fails: it is dropped and replaced, and the cluster's next wake is answered by its own pod, as without a pool.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes import client as k8s

from modelcluster.api.naming import object_name
from modelcluster.api.pod_auth import CredentialIssuer
from modelcluster.api.standby import ADMIN_LOAD_PATH
from modelcluster.api.warm_pool import NONCE_ANNOTATION, POOL_LABEL, STANDBY, STATE_LABEL, standby_subject
from modelcluster.devcluster.tiny_models import MODEL_ID as TINY_CHAT

from support import (
    Cluster,
    GatewayProcess,
    OperatorProcess,
    Tenant,
    create_key,
    eventually,
    modelcluster_body,
    pod_auth_key,
)

pytestmark = pytest.mark.cluster
GROUP, VERSION, PLURAL = "modelcluster.dev", "v1alpha1", "modelclusters"
NAME = object_name(TINY_CHAT)
POOL = "llm/micro=1@modelcluster.dev/local/runtime-llm:0.1.0"
START_TIMEOUT = 300
TOKENS = 150


def pool_pods(cluster: Cluster, ns: str, state: str | None = None) -> list[k8s.V1Pod]:
    pods = cluster.core.list_namespaced_pod(ns, label_selector=POOL_LABEL).items
    return [pod for pod in pods if state is None or (pod.metadata.labels or {}).get(STATE_LABEL) == state]


def warm_standby(cluster: Cluster, ns: str) -> k8s.V1Pod | None:
    """The pool's standby once its warm-up is done (its startup probe on /standby passed)."""
    for pod in pool_pods(cluster, ns, STANDBY):
        statuses = pod.status.container_statuses or []
        if pod.metadata.deletion_timestamp is None and statuses and statuses[0].started:
            return pod
    return None


def own_pods(cluster: Cluster, ns: str) -> list[k8s.V1Pod]:
    pods = cluster.core.list_namespaced_pod(ns, label_selector=f"app.kubernetes.io/instance={NAME}").items
    return [pod for pod in pods if STATE_LABEL not in (pod.metadata.labels or {})]


def ready(pod: k8s.V1Pod) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


def test_a_woken_cluster_borrows_a_standby_hands_over_without_losing_streams_and_the_pool_refills(
    cluster: Cluster,
    gateway: GatewayProcess,
    tenant: Tenant,
    operator_aside: None,
    test_catalog: Path,
    gateway_metrics_port: int,
    tmp_path: Path,
) -> None:
    if cluster.local is None:
        pytest.skip("needs the local control plane's process-backed pods")
    ns = tenant.namespace
    args = [
        "--catalog",
        str(test_catalog),
        f"--gateway-metrics-url=http://127.0.0.1:{gateway_metrics_port}/metrics",
        f"--warm-pool={POOL}",
        f"--warm-pool-namespace={ns}",
    ]
    operator = OperatorProcess(cluster, tmp_path, args)
    operator.start()
    objects = k8s.CustomObjectsApi(cluster.api_client)

    def status() -> dict[str, Any]:
        found: dict[str, Any] = objects.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, NAME)
        return found.get("status") or {}

    def conditions() -> dict[str, dict[str, Any]]:
        return {c["type"]: c for c in status().get("conditions") or []}

    try:
        standby = eventually(lambda: warm_standby(cluster, ns), timeout=START_TIMEOUT, interval=1, what="a standby")
        # A standby is never selected by a cluster: it serves nothing until claimed.
        assert not (standby.metadata.labels or {}).get("app.kubernetes.io/instance")

        # A stopped cluster: 5 idle seconds take it to zero; once woken, the streams keep it up until the hand-over.
        body = modelcluster_body(TINY_CHAT, capacity={"min": 0, "desired": 1, "max": 1}, timeout=5)
        objects.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, body)
        eventually(lambda: status().get("status") == "stopped", timeout=180, interval=1, what="stopped")
        eventually(lambda: not own_pods(cluster, ns), timeout=120, interval=1, what="its first pod gone")
        standby = eventually(lambda: warm_standby(cluster, ns), timeout=START_TIMEOUT, interval=1, what="warm")
        borrowed_name = standby.metadata.name

        wide = Tenant(ns, create_key(cluster, ns, concurrency=128))
        eventually(
            lambda: (
                httpx.get(f"{gateway.url}/models/v2/list/tasks", headers=wide.headers, timeout=5).status_code == 200
            ),
            timeout=30,
            what="the new key",
        )
        url = f"{gateway.url}/models/v2/{TINY_CHAT}"
        answers: list[tuple[int, float]] = []  # status, wall-clock time of the answer
        streams: list[tuple[int, str]] = []
        handed_over = threading.Event()

        def ask(i: int) -> None:
            request = {"input": f"wake {i}", "params": {"max_new_tokens": 4}}
            answer = httpx.post(url, headers=wide.headers, json=request, timeout=START_TIMEOUT)
            answers.append((answer.status_code, time.time()))

        def stream(i: int) -> None:
            # Stream after stream until the hand-over is done: streams run on the borrowed pod while it leaves.
            params = {"max_new_tokens": TOKENS, "min_new_tokens": TOKENS}
            with httpx.Client(timeout=START_TIMEOUT) as http:
                while True:
                    request = {"input": f"story {i}", "stream": True, "params": params}
                    with http.stream("POST", url, headers=wide.headers, json=request) as response:
                        streams.append((response.status_code, "".join(response.iter_text())))
                    if handed_over.is_set():
                        return

        threads = [threading.Thread(target=ask, args=(i,), daemon=True) for i in range(50)]
        threads += [threading.Thread(target=stream, args=(i,), daemon=True) for i in range(20)]
        for thread in threads:
            thread.start()
        seen: set[str] = set()
        named: set[str] = set()  # the standbys the status named for the gateway to route to

        def claimed_then_handed_over() -> bool:
            now = status()
            named.update([now["borrowedPod"]["name"]] if now.get("borrowedPod") else [])
            seen.update(c["reason"] for c in now.get("conditions") or [] if c["type"] == "WarmStandby")
            names = {pod.metadata.name for pod in pool_pods(cluster, ns)}
            return borrowed_name not in names and any(ready(pod) for pod in own_pods(cluster, ns))

        try:
            eventually(claimed_then_handed_over, timeout=START_TIMEOUT, interval=0.5, what="the hand-over")
        finally:
            handed_over.set()
        for thread in threads:
            thread.join(timeout=START_TIMEOUT)
        assert not any(thread.is_alive() for thread in threads)

        # Every held request answered, the first ones by the borrowed standby: before the cluster's own pod was Ready.
        assert [code for code, _ in answers] == [200] * 50
        (own,) = [pod for pod in own_pods(cluster, ns) if ready(pod)]
        own_ready = next(c.last_transition_time for c in own.status.conditions if c.type == "Ready")
        assert min(at for _, at in answers) < own_ready.timestamp()
        # No stream lost: each one the clients opened ended whole.
        assert len(streams) >= 20
        for code, text in streams:
            assert code == 200 and text and "[error]" not in text
        assert "Borrowed" in seen
        assert named == {borrowed_name}
        handed = eventually(lambda: conditions().get("WarmStandby", {}).get("reason") == "HandedOver", timeout=30)
        assert handed
        assert "borrowedPod" not in status()  # handed over: the gateway sends it nothing more
        # The pool refills with a new standby; the wake's path is in the cold-start histogram.
        eventually(lambda: warm_standby(cluster, ns), timeout=START_TIMEOUT, interval=1, what="the pool refilled")
        assert borrowed_name not in {pod.metadata.name for pod in pool_pods(cluster, ns)}
        assert 'modelcluster_cold_start_seconds_count{path="standby",phase="total"} 1.0' in operator.metrics()

        # A standby whose load fails: the cluster stops again (5 s after the last stream), its standby is made to
        # load a model that does not exist (as a broken load would), and the next wake is answered by its own pod.
        eventually(lambda: status().get("status") == "stopped", timeout=180, interval=1, what="stopped again")
        eventually(lambda: not own_pods(cluster, ns), timeout=START_TIMEOUT, interval=1, what="its pod gone")
        broken = eventually(lambda: warm_standby(cluster, ns), timeout=START_TIMEOUT, interval=1, what="warm")
        issuer = CredentialIssuer(pod_auth_key(cluster))
        nonce = broken.metadata.annotations[NONCE_ANNOTATION]
        headers = issuer.headers(*standby_subject(ns, broken.metadata.name, nonce))
        order = {"model_id": "modelcluster/no-such-model", "task": "chat"}
        load = httpx.post(f"http://{broken.status.pod_ip}:8000{ADMIN_LOAD_PATH}", json=order, headers=headers)
        assert load.status_code == 202, load.text
        later: list[int] = []

        def ask_again(i: int) -> None:
            request = {"input": f"again {i}", "params": {"max_new_tokens": 4}}
            later.append(httpx.post(url, headers=wide.headers, json=request, timeout=START_TIMEOUT).status_code)

        again = [threading.Thread(target=ask_again, args=(i,), daemon=True) for i in range(10)]
        for thread in again:
            thread.start()
        for thread in again:
            thread.join(timeout=START_TIMEOUT)
        assert later == [200] * 10
        # The broken standby was dropped and replaced.
        eventually(
            lambda: broken.metadata.name not in {pod.metadata.name for pod in pool_pods(cluster, ns)},
            timeout=120,
            what="the broken standby dropped",
        )
        eventually(lambda: pool_pods(cluster, ns), timeout=START_TIMEOUT, interval=1, what="replaced")
    finally:
        operator.stop()
