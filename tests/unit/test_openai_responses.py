"""``POST /models/v2/openai/v1/responses`` for an open chat model: the gateway app, a pod answering ``/run``, and
the official ``openai`` client (plain and streamed)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from modelcluster.api.inference import COMPLETION_TOKENS_HEADER, PROMPT_TOKENS_HEADER
from modelcluster.api.naming import object_name
from modelcluster.catalog import Catalog
from modelcluster.gateway.app import create_app
from modelcluster.gateway.keys import build_key_secret, generate_key
from modelcluster.gateway.keystore import KeyStore
from modelcluster.gateway.settings import GatewaySettings
from modelcluster.gateway.state import Gateway

from support import FakeKube
from support.routing import cluster_uid, slice_metadata, trusting

TENANT = "acme"
MODEL_ID = "Qwen/Qwen3-4B"


def sse(payload: Any) -> bytes:
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


@pytest.fixture
async def gateway_url(default_catalog: Catalog) -> AsyncIterator[tuple[str, str, list[Any]]]:
    runs: list[Any] = []

    async def run(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        runs.append(body)
        if "text/event-stream" not in request.headers.get("Accept", ""):
            headers = {PROMPT_TOKENS_HEADER: "6", COMPLETION_TOKENS_HEADER: "2"}
            return web.json_response(
                {"error": None, "output": {"role": "assistant", "content": "Hi there"}}, headers=headers
            )
        out = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await out.prepare(request)
        for text in ("Hi", " there"):
            await out.write(sse({"error": None, "output": text}))
        await out.write(sse({"error": None, "output": "", "usage": {"prompt_tokens": 6, "completion_tokens": 2}}))
        await out.write(b"data: [DONE]\n\n")
        return out

    pod = web.Application()
    pod.router.add_post("/run", run)
    pod_server = TestServer(pod)
    await pod_server.start_server()
    gateway = Gateway(settings=GatewaySettings(), catalog=default_catalog, kube=FakeKube())
    name = object_name(MODEL_ID)
    gateway.clusters.put(
        {"metadata": {"namespace": TENANT, "name": name, "uid": cluster_uid(name)}, "spec": {"model": MODEL_ID}}
    )
    trusting(gateway.endpoints, (TENANT, name))
    gateway.endpoints.event(
        "ADDED",
        {
            "metadata": slice_metadata(f"{name}-1", TENANT, name),
            "ports": [{"name": "http", "port": pod_server.port}],
            "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": True}, "targetRef": {"name": "p"}}],
        },
    )
    keys = KeyStore("keys", max_staleness_s=60.0)
    key = generate_key()
    secret = build_key_secret(key, TENANT, 8, "keys")
    secret["metadata"]["resourceVersion"] = "1"
    keys.reset([secret])
    keys.confirm()
    keys._ready = True
    await gateway.proxy.start()
    server = TestServer(create_app(gateway, keys))
    await server.start_server()
    try:
        yield f"http://127.0.0.1:{server.port}/models/v2/openai/v1", key, runs
    finally:
        await server.close()
        await gateway.proxy.stop()
        await pod_server.close()


async def test_responses_of_an_open_chat_model_plain_and_streamed(gateway_url: tuple[str, str, list[Any]]) -> None:
    url, key, runs = gateway_url
    client = openai.AsyncOpenAI(api_key=key, base_url=url, max_retries=0)
    answer = await client.responses.create(
        model=MODEL_ID, input="hello", instructions="Be brief.", max_output_tokens=20
    )
    assert answer.output_text == "Hi there"
    assert answer.status == "completed"
    assert answer.usage is not None
    assert (answer.usage.input_tokens, answer.usage.output_tokens, answer.usage.total_tokens) == (6, 2, 8)
    assert runs[-1]["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello"}]
    assert runs[-1]["params"]["max_new_tokens"] == 20
    stream = await client.responses.create(model=MODEL_ID, input=[{"role": "user", "content": "hello"}], stream=True)
    events = [event async for event in stream]
    assert [event.type for event in events][:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert [event.delta for event in events if event.type == "response.output_text.delta"] == ["Hi", " there"]
    final: Any = events[-1]
    assert final.type == "response.completed"
    assert final.response.output_text == "Hi there"
    assert final.response.usage.output_tokens == 2
    assert [event.sequence_number for event in events] == list(range(len(events)))


async def test_responses_refuse_a_model_that_is_not_chat(gateway_url: tuple[str, str, list[Any]]) -> None:
    url, key, _ = gateway_url
    client = openai.AsyncOpenAI(api_key=key, base_url=url, max_retries=0)
    with pytest.raises(openai.BadRequestError, match="responses cannot run"):
        await client.responses.create(model="sentence-transformers/all-MiniLM-L6-v2", input="hi")
