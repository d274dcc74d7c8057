"""The proxy against pods on loopback: a connection a pod closed before answering is sent once more."""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import struct
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, cast

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from modelcluster.api.errors import BadGateway
from modelcluster.gateway.demand import Demand
from modelcluster.gateway.endpoints import Endpoint, EndpointTable
from modelcluster.gateway.metrics import GatewayMetrics
from modelcluster.gateway.proxy import Proxy, closed_before_answer, no_route, no_route_message, resend_exclusions
from modelcluster.gateway.router import Router
from modelcluster.gateway.settings import GatewaySettings
from modelcluster.kube.client import Kube
from modelcluster.kube.index import ClusterTable

from support.routing import slice_metadata, trusting

KEY = ("tenant", "gpt2-1234abcd")


def endpoint_slice(name: str, port: int, pod: str) -> dict[str, Any]:
    return {
        "metadata": slice_metadata(name, KEY[0], KEY[1]),
        "ports": [{"name": "http", "port": port}],
        "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": True}, "targetRef": {"name": pod}}],
    }


@dataclass
class ClosingPod:
    """A pod that answers ``answers_per_connection`` requests on a connection, then closes it at the next one.

    That next request is read in full and never answered: what a client sees when it sends on a pooled
    connection the pod closed meanwhile. ``reset`` closes with a TCP RST instead of a FIN; ``on_close``
    runs just before.
    """

    answers_per_connection: int
    reset: bool = False
    on_close: Callable[[], None] = lambda: None
    requests: int = 0
    connections: int = 0
    server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self.serve, "127.0.0.1", 0)
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        answered = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                await reader.readexactly(length)
                self.requests += 1
                if answered == self.answers_per_connection:
                    self.on_close()
                    if self.reset:
                        sock = writer.get_extra_info("socket")
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    writer.close()
                    return
                answered += 1
                body = b'{"error": null, "output": "closing pod"}'
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    + f"Content-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()


@dataclass
class Gateway:
    """The proxy wired to a router with real tables, as the gateway wires them."""

    endpoints: EndpointTable = field(default_factory=EndpointTable)
    metrics: GatewayMetrics = field(default_factory=GatewayMetrics)
    proxy: Proxy = field(init=False)

    def __post_init__(self) -> None:
        settings = GatewaySettings(hold_timeout_s=2.0)
        clusters = ClusterTable()
        clusters.put({"metadata": {"namespace": KEY[0], "name": KEY[1]}, "spec": {"model": "openai-community/gpt2"}})
        router = Router(settings, cast(Kube, None), clusters, self.endpoints, Demand(self.metrics), self.metrics)
        self.endpoints.on_change = router.changed
        trusting(self.endpoints, KEY)  # the slices are the EndpointSlice controller's, of the operator's Service
        self.proxy = Proxy(router, self.metrics, connect_timeout_s=2.0, read_timeout_s=10.0, attempts=3)

    def add_pod(self, name: str, port: int) -> None:
        self.endpoints.event("ADDED", endpoint_slice(name, port, name))

    def remove_pod(self, name: str) -> None:
        self.endpoints.event("DELETED", endpoint_slice(name, 0, name))

    async def run(self) -> tuple[int, bytes]:
        upstream = await self.proxy.send(KEY, b'{"text": "hi"}', {"Content-Type": "application/json"})
        try:
            return upstream.response.status, await upstream.response.read()
        finally:
            upstream.close(reuse=True)

    def errors(self, kind: str) -> float:
        value = self.metrics.registry.get_sample_value("modelcluster_gateway_upstream_errors_total", {"kind": kind})
        return value or 0.0

    def in_flight(self) -> int:
        return self.proxy.router.balancer.total()


@pytest.fixture
async def gateway() -> AsyncIterator[Gateway]:
    made = Gateway()
    await made.proxy.start()
    yield made
    await made.proxy.stop()


@pytest.fixture
async def healthy_pod() -> AsyncIterator[int]:
    async def run(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"error": None, "output": "healthy pod"})

    app = web.Application()
    app.router.add_post("/run", run)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    assert server.port is not None
    yield server.port
    await server.close()


@pytest.mark.parametrize("reset", [False, True], ids=["fin", "rst"])
async def test_a_pooled_connection_closed_by_the_pod_is_sent_again_on_a_fresh_one(
    gateway: Gateway, reset: bool
) -> None:
    pod = ClosingPod(answers_per_connection=1, reset=reset)
    gateway.add_pod("pod-a", await pod.start())
    try:
        assert await gateway.run() == (200, b'{"error": null, "output": "closing pod"}')
        # The second request goes out on the pooled connection, which the pod closes unanswered.
        assert await gateway.run() == (200, b'{"error": null, "output": "closing pod"}')
    finally:
        await pod.stop()
    assert (pod.requests, pod.connections) == (3, 2)
    assert gateway.errors("disconnect") == 1
    assert gateway.errors("protocol") == 0
    assert gateway.in_flight() == 0


async def test_a_leaving_pod_that_closes_its_connection_sends_the_request_to_another(
    gateway: Gateway, healthy_pod: int
) -> None:
    def leave() -> None:
        # The pod drains: it closes its idle connections as the endpoint update brings the next pod.
        gateway.add_pod("pod-b", healthy_pod)

    pod = ClosingPod(answers_per_connection=1, on_close=leave)
    gateway.add_pod("pod-a", await pod.start())
    try:
        assert await gateway.run() == (200, b'{"error": null, "output": "closing pod"}')
        status, body = await gateway.run()
    finally:
        await pod.stop()
    assert (status, body) == (200, b'{"error": null, "output": "healthy pod"}')
    # The pod that closed the connection is skipped while another is ready.
    assert (pod.requests, pod.connections) == (2, 1)
    assert gateway.errors("disconnect") == 1
    assert gateway.in_flight() == 0


async def test_a_request_is_sent_again_only_once(gateway: Gateway) -> None:
    pod = ClosingPod(answers_per_connection=0)
    gateway.add_pod("pod-a", await pod.start())
    try:
        with pytest.raises(BadGateway):
            await gateway.run()
    finally:
        await pod.stop()
    assert pod.requests == 2
    assert gateway.errors("disconnect") == 1
    assert gateway.errors("protocol") == 1
    assert gateway.in_flight() == 0


def test_only_errors_before_any_answer_byte_count_as_closed_unanswered() -> None:
    key = aiohttp.client_reqrep.ConnectionKey("127.0.0.1", 80, False, True, None, None, None)
    assert closed_before_answer(aiohttp.ServerDisconnectedError())
    assert closed_before_answer(aiohttp.ClientOSError(104, "Connection reset by peer"))
    assert closed_before_answer(aiohttp.ClientOSError(32, "Broken pipe"))
    assert not closed_before_answer(aiohttp.ClientConnectorError(key, ConnectionResetError(104, "reset")))
    assert not closed_before_answer(aiohttp.ClientOSError(113, "No route to host"))
    assert not closed_before_answer(aiohttp.ClientPayloadError("Response payload is not completed"))
    assert not closed_before_answer(aiohttp.ClientResponseError(cast(Any, None), (), status=400))


def test_the_pod_that_closed_is_skipped_only_while_another_is_ready() -> None:
    a, b, c = (Endpoint("127.0.0.1", port, f"pod-{port}") for port in (1, 2, 3))
    assert resend_exclusions(frozenset(), a, [a, b]) == {a.url}
    assert resend_exclusions(frozenset({c.url}), a, [a, b, c]) == {a.url, c.url}
    assert resend_exclusions(frozenset(), a, [a]) == frozenset()
    assert resend_exclusions(frozenset({b.url}), a, [a, b]) == {b.url}


@pytest.mark.parametrize(
    ("code", "expected"), [(errno.EHOSTUNREACH, True), (errno.ENETUNREACH, True), (errno.ECONNREFUSED, False)]
)
def test_only_an_address_without_a_route_counts_as_no_route(code: int, expected: bool) -> None:
    key = aiohttp.client_reqrep.ConnectionKey("10.200.0.1", 8000, False, True, None, None, None)
    assert no_route(aiohttp.ClientConnectorError(key, OSError(code, os.strerror(code)))) is expected
    assert "no runtime for this model" in no_route_message(["10.200.0.1", "10.200.0.1"])
