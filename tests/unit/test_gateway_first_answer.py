"""Route on first answer: the gateway probes a starting pod itself and routes to it on its first healthy answer.

The pods are real HTTP servers on loopback answering ``/health`` as the runtime does (503 while loading, 200
once ready); the endpoint table, the router and the proxy are the gateway's own, wired as the gateway wires them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from modelcluster.api.errors import Unavailable
from modelcluster.gateway.demand import Demand
from modelcluster.gateway.endpoints import Endpoint, EndpointTable, borrowed_endpoint, endpoints_of_slice
from modelcluster.gateway.first_answer import healthy, next_answered, probe_targets
from modelcluster.gateway.metrics import GatewayMetrics
from modelcluster.gateway.router import Router
from modelcluster.gateway.settings import GatewaySettings
from modelcluster.kube.index import ClusterTable

from support import FakeKube, eventually_async, free_port
from support.routing import cluster_uid, operator_service, slice_metadata

NS = "tenant"
NAME = "minilm-1234abcd"
KEY = (NS, NAME)
RUNNING = {"status": "deploying", "reason": "Starting", "targetReplicas": 1}


def pod_slice(*endpoints: tuple[str, int, str, bool], name: str = "s1") -> dict[str, Any]:
    """The EndpointSlice of the cluster's Service, listing (address, port, pod, ready) endpoints (one port each)."""
    ports = {port for _, port, _, _ in endpoints} or {8000}
    assert len(ports) == 1
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": slice_metadata(name, NS, NAME),
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": ports.pop(), "protocol": "TCP"}],
        "endpoints": [
            {
                "addresses": [address],
                "conditions": {"ready": ready, "serving": ready, "terminating": False},
                "targetRef": {"kind": "Pod", "name": pod},
            }
            for address, _, pod, ready in endpoints
        ],
    }


def cluster(borrowed: dict[str, Any] | None = None, version: int = 1) -> dict[str, Any]:
    status = {**RUNNING, "borrowedPod": borrowed} if borrowed else RUNNING
    return {
        "apiVersion": "modelcluster.dev/v1alpha1",
        "kind": "ModelCluster",
        "metadata": {"name": NAME, "namespace": NS, "uid": cluster_uid(NAME), "resourceVersion": str(version)},
        "spec": {"model": "sentence-transformers/all-MiniLM-L6-v2"},
        "status": status,
    }


# --- pure decisions ---------------------------------------------------------------------------


A, B, C = (Endpoint(f"10.0.0.{i}", 8000, f"pod-{i}") for i in (1, 2, 3))


def test_only_200_is_healthy() -> None:
    assert healthy(200)
    assert not any(healthy(code) for code in (204, 301, 404, 500, 503))


def test_a_round_probes_at_most_the_limit() -> None:
    assert probe_targets((A, B, C), 2) == (A, B)
    assert probe_targets((A,), 8) == (A,)


def test_answered_pods_are_those_healthy_and_still_starting() -> None:
    # A answered before and again, B answers now, C failed.
    assert next_answered(frozenset({A}), (A, B, C), {A: True, B: True, C: False}) == {A, B}
    # A fails once: dropped at once.
    assert next_answered(frozenset({A, B}), (A, B), {A: False, B: True}) == {B}
    # B turned ready (or left its slice): the slice decides it now.
    assert next_answered(frozenset({A, B}), (A,), {A: True}) == {A}
    # A pod not probed this round (over the limit) keeps its verdict.
    assert next_answered(frozenset({C}), (A, B, C), {A: False}) == {C}


def test_the_starting_endpoints_of_a_slice_are_the_unready_not_terminating_ones() -> None:
    slice_ = pod_slice(("10.0.0.1", 8000, "a", True), ("10.0.0.2", 8000, "b", False))
    slice_["endpoints"].append(
        {"addresses": ["10.0.0.3"], "conditions": {"ready": False, "terminating": True}, "targetRef": {"name": "c"}}
    )
    assert endpoints_of_slice(slice_) == (Endpoint("10.0.0.1", 8000, "a"),)
    assert endpoints_of_slice(slice_, starting=True) == (Endpoint("10.0.0.2", 8000, "b"),)


@pytest.mark.parametrize(
    ("borrowed", "expected"),
    [
        ({"name": "text-l4-ab12cd", "address": "10.0.0.9", "port": 8000}, Endpoint("10.0.0.9", 8000, "text-l4-ab12cd")),
        (None, None),
        ("10.0.0.9", None),
        ({"name": "p", "address": "", "port": 8000}, None),
        ({"name": "p", "address": "10.0.0.9"}, None),
        ({"name": "p", "address": "10.0.0.9", "port": "8000"}, None),
        ({"name": "p", "address": "10.0.0.9", "port": 0}, None),
        ({"name": "p", "address": "10.0.0.9", "port": True}, None),
        ({"address": "10.0.0.9", "port": 8000}, None),
    ],
)
def test_the_borrowed_standby_is_read_from_the_status_or_not_at_all(borrowed: Any, expected: Endpoint | None) -> None:
    assert borrowed_endpoint({"status": {"borrowedPod": borrowed}}) == expected
    assert borrowed_endpoint(None) is None


def test_a_borrowed_standby_starts_first_until_its_slice_lists_it_ready() -> None:
    standby = Endpoint("10.0.0.9", 8000, "text-l4-ab12cd")
    named: dict[str, Endpoint | None] = {"now": standby}
    heard: list[tuple[str, str]] = []
    table = EndpointTable(cluster_uid=lambda key: cluster_uid(key[1]), borrowed=lambda key: named["now"])
    table.on_starting = heard.append
    table.refresh(KEY)
    assert table.starting(KEY) == (standby,)  # no slice, no Service yet: the status alone names it
    assert heard == [KEY]
    table.services.reset([operator_service(NS, NAME)])
    table.reset([pod_slice(("10.0.0.2", 8000, "own", False), ("10.0.0.9", 8000, "text-l4-ab12cd", False))])
    assert table.starting(KEY) == (standby, Endpoint("10.0.0.2", 8000, "own"))  # once, and first
    heard.clear()
    table.event("MODIFIED", pod_slice(("10.0.0.2", 8000, "own", False), ("10.0.0.9", 8000, "text-l4-ab12cd", True)))
    assert table.ready(KEY) == (standby,)
    assert table.starting(KEY) == (Endpoint("10.0.0.2", 8000, "own"),)
    assert heard == [KEY]
    named["now"] = None  # handed over: the status names no standby any more
    table.event("MODIFIED", pod_slice(("10.0.0.2", 8000, "own", False)))
    assert table.starting(KEY) == (Endpoint("10.0.0.2", 8000, "own"),)
    heard.clear()
    table.refresh(KEY)
    assert heard == []  # nothing changed: nothing heard


def test_only_trusted_slices_have_starting_pods() -> None:
    table = EndpointTable(cluster_uid=lambda key: cluster_uid(key[1]) if key == KEY else None)
    table.reset([pod_slice(("10.0.0.2", 8000, "b", False))])
    assert table.starting(KEY) == ()  # the Service is not known yet: nothing routes, nothing is probed
    table.services.reset([operator_service(NS, NAME)])
    assert table.starting(KEY) == (Endpoint("10.0.0.2", 8000, "b"),)
    table.event("MODIFIED", pod_slice(("10.0.0.2", 8000, "b", True)))
    assert table.starting(KEY) == ()
    assert table.ready(KEY) == (Endpoint("10.0.0.2", 8000, "b"),)


# --- a real pod on loopback -------------------------------------------------------------------


@dataclass
class Pod:
    """An HTTP server answering ``/health`` as a runtime does: 503 until :attr:`healthy` is set.

    With :attr:`holds`, it holds a ``/health?wait=`` call until it turns healthy or the wait passes, as the
    runtime does (:meth:`turn_healthy` then answers the held calls).
    """

    port: int
    address: str = "127.0.0.1"
    healthy: bool = False
    holds: bool = False
    probes: int = 0
    runner: web.AppRunner | None = None
    settled: asyncio.Event = field(default_factory=asyncio.Event)

    def turn_healthy(self) -> None:
        self.healthy = True
        self.settled.set()

    async def health(self, request: web.Request) -> web.Response:
        self.probes += 1
        wait = float(request.query.get("wait") or 0)
        if self.holds and wait and not self.healthy:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.settled.wait(), wait)
        if self.healthy:
            return web.json_response({"error": None, "output": "ready"})
        return web.json_response({"error": "Model is not ready yet: loading", "output": None}, status=503)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/health", self.health)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, self.address, self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint(self.address, self.port, f"pod-{self.address}")


@dataclass
class Wired:
    """The gateway's endpoint table and router, wired as the gateway wires them."""

    settings: GatewaySettings
    metrics: GatewayMetrics = field(default_factory=GatewayMetrics)
    endpoints: EndpointTable = field(default_factory=EndpointTable)
    clusters: ClusterTable = field(default_factory=ClusterTable)
    router: Router = field(init=False)
    demand: Demand = field(init=False)

    def __post_init__(self) -> None:
        self.demand = Demand(self.metrics)
        kube = FakeKube(read=lambda namespace, name: self.clusters.get((namespace, name)))
        self.router = Router(self.settings, kube, self.clusters, self.endpoints, self.demand, self.metrics)
        self.endpoints.on_change = self.router.changed
        self.endpoints.cluster_uid = lambda key: (self.clusters.get(key) or {}).get("metadata", {}).get("uid")
        self.endpoints.borrowed = lambda key: borrowed_endpoint(self.clusters.get(key))
        self.clusters.on_change = self.cluster_changed
        self.endpoints.services.reset([operator_service(NS, NAME)])
        self.clusters.reset([cluster()])

    def cluster_changed(self, key: tuple[str, str]) -> None:
        self.endpoints.refresh(key)
        self.router.changed(key)

    async def request(self) -> Endpoint:
        self.demand.start(KEY)
        try:
            endpoint = await self.router.acquire(KEY)
            self.router.release(KEY, endpoint)
            return endpoint
        finally:
            self.demand.finish(KEY)


@pytest.fixture
async def pod() -> AsyncIterator[Pod]:
    started = Pod(port=free_port())
    await started.start()
    yield started
    await started.stop()


@pytest.fixture
async def wired() -> AsyncIterator[Wired]:
    made = Wired(GatewaySettings(hold_timeout_s=10.0, wake_interval_s=60.0, start_probe_interval_s=0.1))
    yield made
    await made.router.stop()


async def test_a_held_request_goes_to_a_starting_pod_the_moment_it_answers_healthy(wired: Wired, pod: Pod) -> None:
    loop = asyncio.get_running_loop()
    wired.endpoints.reset([pod_slice(("127.0.0.1", pod.port, pod.endpoint.pod, False))])
    task = asyncio.create_task(wired.request())
    await eventually_async(lambda: pod.probes >= 2, what="the gateway probing the starting pod")
    assert not task.done()  # 503: loading

    pod.healthy = True
    answered_at = loop.time()
    endpoint = await asyncio.wait_for(task, 2)
    # Probed every 0.1 s: routed within a round or two, with the slice still saying not ready.
    assert loop.time() - answered_at < 0.5
    assert endpoint == pod.endpoint
    assert wired.endpoints.ready(KEY) == ()
    # Later requests go there at once while the slice catches up.
    assert await asyncio.wait_for(wired.request(), 0.05) == pod.endpoint


async def test_a_pod_that_fails_after_its_first_answer_is_dropped_at_once(wired: Wired, pod: Pod) -> None:
    wired.endpoints.reset([pod_slice(("127.0.0.1", pod.port, pod.endpoint.pod, False))])
    pod.healthy = True
    await wired.request()
    assert wired.router.candidates(KEY) == (pod.endpoint,)

    pod.healthy = False  # e.g. draining: one failed probe takes it out
    await eventually_async(lambda: wired.router.candidates(KEY) == (), what="the failed pod dropped")

    pod.healthy = True
    held = asyncio.create_task(wired.request())
    assert await asyncio.wait_for(held, 2) == pod.endpoint
    wired.router.unreachable(KEY, pod.endpoint)  # a refused connection drops it without waiting for a probe
    assert wired.router.candidates(KEY) == ()


async def test_a_pod_that_leaves_its_slice_or_turns_ready_is_no_longer_probed(wired: Wired, pod: Pod) -> None:
    wired.endpoints.reset([pod_slice(("127.0.0.1", pod.port, pod.endpoint.pod, False))])
    pod.healthy = True
    await wired.request()
    wired.endpoints.event("MODIFIED", pod_slice(("127.0.0.1", pod.port, pod.endpoint.pod, True)))
    assert wired.router.candidates(KEY) == (pod.endpoint,)  # once, from the slice
    await eventually_async(lambda: not wired.router.first_answer._loops, what="the probe loop ending")
    probes = pod.probes
    await asyncio.sleep(0.3)
    assert pod.probes == probes


async def test_nothing_is_probed_without_held_requests_or_when_probing_is_off(pod: Pod) -> None:
    off = Wired(GatewaySettings(hold_timeout_s=0.5, start_probe_interval_s=0.05, start_probe_pods=0))
    try:
        off.endpoints.reset([pod_slice(("127.0.0.1", pod.port, pod.endpoint.pod, False))])
        pod.healthy = True
        await asyncio.sleep(0.2)
        assert pod.probes == 0  # nothing held
        with pytest.raises(Unavailable, match="no ready replica"):
            await off.request()  # held until its deadline: only the slice's readiness counts
        assert pod.probes == 0
    finally:
        await off.router.stop()


async def test_probes_are_bounded_per_cluster() -> None:
    wired = Wired(GatewaySettings(hold_timeout_s=10.0, start_probe_interval_s=0.1, start_probe_pods=2))
    port = free_port()
    pods = [Pod(port=port, address=f"127.0.0.{i}") for i in range(1, 5)]
    for each in pods:
        await each.start()
    try:
        wired.endpoints.reset([pod_slice(*((p.address, p.port, p.endpoint.pod, False) for p in pods))])
        task = asyncio.create_task(wired.request())
        await eventually_async(lambda: sum(p.probes for p in pods) >= 6, what="three rounds of probes")
        # The table orders starting pods by URL: the first two are probed, the others wait for a free place.
        assert [p.probes > 0 for p in pods] == [True, True, False, False]
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    finally:
        await wired.router.stop()
        for each in pods:
            await each.stop()


async def test_a_borrowed_standby_named_in_the_status_takes_the_held_requests_as_it_loads(wired: Wired) -> None:
    """The operator names the standby it lent in the cluster's status; no slice lists it yet. The gateway probes
    it at once, its held health check answers the moment the model is loaded, and the held requests go there."""
    loop = asyncio.get_running_loop()
    standby = Pod(port=free_port(), holds=True)
    await standby.start()
    try:
        held = [asyncio.create_task(wired.request()) for _ in range(5)]
        await asyncio.sleep(0.05)
        assert standby.probes == 0  # not named yet: nothing knows of it
        named_at = loop.time()
        wired.clusters.put(
            cluster({"name": standby.endpoint.pod, "address": standby.address, "port": standby.port}, version=2)
        )
        await eventually_async(lambda: standby.probes >= 1, what="the standby probed")
        assert loop.time() - named_at < 0.05  # at once, not at the next round
        await asyncio.sleep(0.3)
        assert not any(task.done() for task in held)  # loading: the probe is held, nothing routes
        assert standby.probes == 1  # one held probe, not a poll every 0.1 s
        healthy_at = loop.time()
        standby.turn_healthy()
        routed = await asyncio.wait_for(asyncio.gather(*held), 2)
        assert loop.time() - healthy_at < 0.05  # the moment it can answer
        assert set(routed) == {standby.endpoint}
        assert wired.endpoints.ready(KEY) == ()  # the slice never listed it
        wired.clusters.put(cluster(version=3))  # handed over: the status names no standby
        assert wired.router.candidates(KEY) == ()
    finally:
        await standby.stop()
