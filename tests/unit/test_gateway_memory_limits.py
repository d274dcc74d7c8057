"""Bounds on what one request costs the gateway: the structure scanner, the routes' 413s, the body and header
deadlines, the hold's byte bounds and the cap on a pod's non-streamed answer."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import given, settings
from hypothesis import strategies as st

from modelcluster.api.errors import BadGateway, RateLimited
from modelcluster.api.inference import parse_run_request
from modelcluster.api.json_limits import (
    JsonLimitExceeded,
    JsonLimits,
    check_json_limits,
    scan_json_limits,
    surely_within,
)
from modelcluster.catalog import Catalog
from modelcluster.gateway.app import create_app
from modelcluster.gateway.demand import Demand
from modelcluster.gateway.endpoints import EndpointTable
from modelcluster.gateway.keys import build_key_secret, generate_key
from modelcluster.gateway.keystore import KeyStore
from modelcluster.gateway.metrics import GatewayMetrics
from modelcluster.gateway.proxy import Proxy
from modelcluster.gateway.router import Router
from modelcluster.gateway.server import api_runner
from modelcluster.gateway.settings import GatewaySettings
from modelcluster.gateway.state import Gateway
from modelcluster.kube.client import Kube
from modelcluster.kube.index import ClusterTable

from support import FakeKube
from support.routing import slice_metadata, trusting

TENANT = "acme"
MODEL_ID = "openai-community/gpt2"
SMALL = JsonLimits(max_depth=4, max_items=10, max_string_bytes=12, max_params_keys=3, max_params_bytes=40)


def items(count: int) -> bytes:
    return b"[" + b",".join([b"1"] * count) + b"]"


# --- the scanner -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"{}",
        b"[]",
        b'{"text": "hi"}',
        b"[[[1]]]",  # depth 3
        b"[[[[]]]]",  # depth 4
        items(10),
        b'{"a": [1, 2], "b": {"c": 3}}',  # 6 items
        b'{"params": {"a": 1, "b": 2, "c": 3}}',
        b'{"params": null}',
        b'{"text": "123456789012"}',  # a string of exactly 12 bytes
        b'{"text": "a\\"b"}',  # escapes are kept whole
        b"[  ]",
        b"{not json",  # not JSON: left to the parser
        b'"unterminated',
        b"",
    ],
)
def test_bodies_within_the_limits_pass(raw: bytes) -> None:
    check_json_limits(raw, SMALL)


@pytest.mark.parametrize(
    ("raw", "limit"),
    [
        (b"[[[[[]]]]]", "max_depth"),
        (b'{"a": {"b": {"c": {"d": {}}}}}', "max_depth"),
        (items(11), "max_items"),
        (b"[" + b",".join([b"{}"] * 11) + b"]", "max_items"),
        (b'{"a": [1, 2, 3], "b": [1, 2, 3], "c": [1, 2, 3]}', "max_items"),  # 3 members + 9 elements
        (b":" * 1000, "max_items"),  # more tokens than any body of 10 items has
        (b'{"text": "1234567890123"}', "max_string_bytes"),
        (b'{"1234567890123": 1}', "max_string_bytes"),
        (b'{"params": {"a": 1, "b": 2, "c": 3, "d": 4}}', "max_params_keys"),
        (b'{"par\\u0061ms": {"a": 1, "b": 2, "c": 3, "d": 4}}', "max_params_keys"),
        (b'{"params": {"a": 1111111111111111111111111111111111111111}}', "max_params_bytes"),
        (b'{"text": "x", "params": [1111111111, 1111111111, 1111111111, 1111111111, 1]}', "max_params_bytes"),
    ],
)
def test_bodies_past_a_limit_are_refused_naming_it(raw: bytes, limit: str) -> None:
    with pytest.raises(JsonLimitExceeded) as caught:
        check_json_limits(raw, SMALL)
    assert caught.value.limit == limit
    assert caught.value.status == 413
    assert f"(limit {limit})" in caught.value.message


def test_params_elsewhere_than_the_top_level_are_not_the_params() -> None:
    check_json_limits(b'{"input": {"params": {"a": 1, "b": 2, "c": 3, "d": 4}}}', JsonLimits(max_params_keys=3))
    check_json_limits(b'{"text": "params", "x": {"a": 1, "b": 2, "c": 3, "d": 4}}', JsonLimits(max_params_keys=3))


def test_the_scan_of_an_amplifier_stops_early_and_a_large_string_is_one_token() -> None:
    amplifier = b'{"params": {"x": [' + b",".join([b"{}"] * 1_000_000) + b"]}}"
    started = time.perf_counter()
    with pytest.raises(JsonLimitExceeded, match="max_items"):
        check_json_limits(amplifier, JsonLimits())
    image = (
        b'{"messages": [{"role": "user", "content": [{"type": "image", "base64": "' + b"QUJD" * 2_000_000 + b'"}]}]}'
    )
    check_json_limits(image, JsonLimits())
    escapes = b'{"text": "' + b'\\"' * 500_000  # unterminated, every other byte a quote: still one linear pass
    check_json_limits(escapes, JsonLimits())
    assert time.perf_counter() - started < 2.0


#: JSON bodies (nested arrays and objects, `params` among the keys) and bytes of JSON's alphabet in any order.
VALUES = st.recursive(
    st.none() | st.integers(-9, 99) | st.text('a,[\\"', max_size=4),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(["params", "a", "b,"]), inner, max_size=4)
    ),
    max_leaves=12,
)
JSONISH = st.one_of(
    VALUES.map(lambda value: json.dumps(value).encode()),
    VALUES.map(lambda value: json.dumps({"params": value}).encode()),
    st.lists(st.sampled_from([b"[", b"]", b"{", b"}", b",", b":", b'"', b"\\", b"a", b'"params"']), max_size=40).map(
        b"".join
    ),
)
LIMITS = st.builds(
    JsonLimits,
    max_depth=st.integers(0, 6),
    max_items=st.integers(0, 12),
    max_string_bytes=st.integers(0, 40),
    max_params_keys=st.integers(0, 5),
    max_params_bytes=st.integers(0, 80),
)


@settings(max_examples=3000, deadline=None)
@given(raw=JSONISH, limits=LIMITS)
def test_a_body_the_byte_counts_clear_passes_the_full_measure(raw: bytes, limits: JsonLimits) -> None:
    if surely_within(raw, limits):
        scan_json_limits(raw, limits)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"text": "hello"}',
        b'{"text": "hello world", "params": {"max_new_tokens": 20, "temperature": 0.5}}',
        json.dumps({"model": MODEL_ID, "messages": [{"role": "user", "content": "hi"}] * 8}).encode(),
    ],
)
def test_usual_bodies_are_cleared_by_the_byte_counts(raw: bytes) -> None:
    assert surely_within(raw, JsonLimits())


def test_bodies_near_a_limit_are_left_to_the_full_measure() -> None:
    assert not surely_within(items(11), SMALL)
    assert not surely_within(b"[" * 5, SMALL)
    assert not surely_within(b'{"text": "' + b"x" * 100 + b'"}', SMALL)
    assert not surely_within(b'{"params": {"a": 1, "b": 2, "c": 3, "d": 4}}', SMALL)
    assert not surely_within(b'{"params": {"a": 1, "b": 2}}', JsonLimits(max_params_keys=1))
    assert surely_within(b'{"params": {"a": 1}}', JsonLimits(max_params_keys=1))
    assert not surely_within(b"[[1]]", JsonLimits(max_depth=1))
    assert not surely_within(b"[1,2,3]", JsonLimits(max_items=2))
    assert surely_within(b"[1,2]", JsonLimits(max_items=2))


def test_the_default_limits_take_the_bodies_of_the_test_suite() -> None:
    limits = GatewaySettings().json_limits()
    assert limits == JsonLimits()
    chat = {"model": MODEL_ID, "messages": [{"role": "user", "content": "hi"}] * 100, "max_tokens": 8}
    native = {"text": ["a"] * 1000, "params": {"max_new_tokens": 8, "temperature": 0.7, "stop_strings": ["\n"]}}
    for body in (chat, native):
        check_json_limits(json.dumps(body).encode(), limits)


# --- the routes ------------------------------------------------------------------------------------------------


async def served(catalog: Catalog, **settings: Any) -> tuple[TestClient[Any, Any], dict[str, str]]:
    gateway = Gateway(settings=GatewaySettings(**settings), catalog=catalog, kube=FakeKube())
    keys = KeyStore("keys", max_staleness_s=60.0)
    key = generate_key()
    secret = build_key_secret(key, TENANT, 64, "keys")
    secret["metadata"]["resourceVersion"] = "1"
    keys.reset([secret])
    keys.confirm()
    keys._ready = True
    client = TestClient(TestServer(create_app(gateway, keys)))
    await client.start_server()
    return client, {"Authorization": f"Key {key}", "Content-Type": "application/json"}


@pytest.fixture
async def api(default_catalog: Catalog) -> AsyncIterator[tuple[TestClient[Any, Any], dict[str, str]]]:
    client, headers = await served(default_catalog, offload_parse_bytes=1024, max_params_keys=4)
    try:
        yield client, headers
    finally:
        await client.close()


@pytest.mark.parametrize("large", [False, True])
async def test_the_native_route_answers_413_naming_the_limit(
    api: tuple[TestClient[Any, Any], dict[str, str]], large: bool
) -> None:
    client, headers = api
    padding = '"' + "a" * 4096 + '"' if large else "0"  # past offload_parse_bytes: parsed in a thread
    deep = '{"text": "hi", "pad": ' + padding + ', "params": {"x": ' + "[" * 100 + "]" * 100 + "}}"
    answer = await client.post(f"/models/v2/{MODEL_ID}", data=deep, headers=headers)
    assert answer.status == 413
    assert (await answer.json()) == {
        "error": "the body nests deeper than 32 levels (limit max_depth)",
        "output": None,
    }
    keys = '{"text": "hi", "params": {"a": 1, "b": 2, "c": 3, "d": 4, "e": 5}}'
    answer = await client.post(f"/models/v2/{MODEL_ID}", data=keys, headers=headers)
    assert answer.status == 413
    assert "(limit max_params_keys)" in (await answer.json())["error"]


async def test_the_openai_route_answers_413_in_its_shape(api: tuple[TestClient[Any, Any], dict[str, str]]) -> None:
    client, headers = api
    body = {"model": MODEL_ID, "messages": [{}] * 20_000}
    answer = await client.post("/models/v2/openai/v1/chat/completions", data=json.dumps(body), headers=headers)
    assert answer.status == 413
    error = (await answer.json())["error"]
    assert error["code"] == "request_too_large" and error["type"] == "invalid_request_error"
    assert "(limit max_items)" in error["message"]


async def test_a_body_that_arrives_too_slowly_answers_408(default_catalog: Catalog) -> None:
    client, headers = await served(default_catalog, client_body_timeout_s=0.3)

    async def slow() -> AsyncIterator[bytes]:
        yield b'{"text": '
        await asyncio.sleep(2)
        yield b'"hi"}'

    try:
        started = time.monotonic()
        answer = await client.post(f"/models/v2/{MODEL_ID}", data=slow(), headers=headers)
        assert answer.status == 408
        assert (await answer.json()) == {"error": "the request body did not arrive within 0.3s", "output": None}
        assert time.monotonic() - started < 1.5
        answer = await client.post("/models/v2/openai/v1/chat/completions", data=slow(), headers=headers)
        assert answer.status == 408
        assert (await answer.json())["error"]["code"] == "request_timeout"
    finally:
        await client.close()


async def test_headers_that_arrive_too_slowly_close_the_connection() -> None:
    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/x", ok)
    runner = api_runner(app, GatewaySettings(client_header_timeout_s=0.5))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = cast(Any, site._server).sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /x HTTP/1.1\r\nHost: x\r\n")  # the head never ends
        started = time.monotonic()
        assert await asyncio.wait_for(reader.read(), timeout=5) == b""
        assert 0.3 < time.monotonic() - started < 3
        writer.close()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n")  # a complete head is answered
        assert b"200 OK" in await asyncio.wait_for(reader.readuntil(b"\r\n"), timeout=5)
        writer.close()
    finally:
        await runner.cleanup()


# --- the hold's byte bounds ------------------------------------------------------------------------------------


def router(**settings: Any) -> Router:
    metrics = GatewayMetrics()
    clusters = ClusterTable()
    for namespace in ("a", "b"):
        clusters.put({"metadata": {"namespace": namespace, "name": "m"}, "spec": {"model": MODEL_ID}})
    made = Router(
        GatewaySettings(hold_timeout_s=30, **settings),
        cast(Kube, None),
        clusters,
        EndpointTable(),
        Demand(metrics),
        metrics,
    )
    made.wake = lambda key: None  # type: ignore[method-assign]
    return made


async def test_held_bytes_are_bounded_per_namespace_and_in_total() -> None:
    held = router(hold_bytes_per_namespace=3000, hold_bytes_total=5000)
    first = asyncio.create_task(held.acquire(("a", "m"), size=2000))
    second = asyncio.create_task(held.acquire(("b", "m"), size=2500))
    await asyncio.sleep(0.01)
    assert held.held_bytes == 4500 and held.held_bytes_of("a") == 2000
    with pytest.raises(RateLimited, match=f"too many bytes are waiting for {MODEL_ID}") as caught:
        await held.acquire(("a", "m"), size=1500)  # past a's 3000
    assert caught.value.retry_after == 1 and caught.value.status == 429
    with pytest.raises(RateLimited, match="too many bytes are waiting"):
        await held.acquire(("b", "m"), size=501)  # within b's 3000, past the total of 5000
    third = asyncio.create_task(held.acquire(("b", "m"), size=500))
    await asyncio.sleep(0.01)
    assert held.held_bytes == 5000
    for task in (first, second, third):
        task.cancel()
    await asyncio.gather(first, second, third, return_exceptions=True)
    assert held.held_bytes == 0 and held.held_bytes_of("a") == 0 and held.held_bytes_of("b") == 0


# --- the cap on a pod's answer ---------------------------------------------------------------------------------


@pytest.mark.parametrize("chunked", [False, True])
async def test_an_answer_larger_than_the_cap_is_a_502(chunked: bool) -> None:
    asked = {"size": 0}

    async def answer(request: web.Request) -> web.StreamResponse:
        size = asked["size"]
        if not chunked:
            return web.Response(body=b"a" * size, content_type="application/json")
        out = web.StreamResponse(headers={"Content-Type": "application/json"})
        out.enable_chunked_encoding()
        await out.prepare(request)
        for _ in range(size // 1024):
            await out.write(b"a" * 1024)
        await out.write_eof()
        return out

    pod = web.Application()
    pod.router.add_post("/run", answer)
    server = TestServer(pod)
    await server.start_server()
    metrics = GatewayMetrics()
    endpoints = trusting(EndpointTable(), ("a", "m"))
    clusters = ClusterTable()
    clusters.put({"metadata": {"namespace": "a", "name": "m"}, "spec": {"model": MODEL_ID}})
    endpoints.event(
        "ADDED",
        {
            "metadata": slice_metadata("m-1", "a", "m"),
            "ports": [{"name": "http", "port": server.port}],
            "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": True}, "targetRef": {"name": "p"}}],
        },
    )
    routing = Router(GatewaySettings(), cast(Kube, None), clusters, endpoints, Demand(metrics), metrics)
    proxy = Proxy(routing, metrics, 2.0, 10.0, 3, max_answer_bytes=64 * 1024)
    await proxy.start()
    try:
        for size, fits in ((64 * 1024, True), (65 * 1024, False)):
            asked["size"] = size
            upstream = await proxy.send(("a", "m"), b"{}", {})
            try:
                if fits:
                    assert len(await proxy.read_answer(upstream.response)) == size
                else:
                    with pytest.raises(BadGateway, match="the model's answer is larger than 65536 bytes"):
                        await proxy.read_answer(upstream.response)
            finally:
                upstream.close(reuse=fits)
        sample = metrics.registry.get_sample_value("modelcluster_gateway_upstream_errors_total", {"kind": "too_large"})
        assert sample == 1.0
    finally:
        await proxy.stop()
        await server.close()


def test_parse_run_request_measures_first_when_given_limits() -> None:
    with pytest.raises(JsonLimitExceeded, match="max_depth"):
        parse_run_request(b'{"params": {"x": [[[[[1]]]]]}}', SMALL)
    assert parse_run_request(b'{"text": "hi", "params": {"a": 1}}', SMALL).params == {"a": 1}
