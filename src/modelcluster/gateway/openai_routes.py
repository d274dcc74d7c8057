"""OpenAI-compatible routes: ``/models/v2/openai/v1/chat/completions``, ``/completions`` and ``/models``.

Requests are translated into the runtime's unified body, sent through the same
router as the native API (hold, wake, least outstanding), and answered in
OpenAI's shapes, streaming as SSE ending with ``data: [DONE]``.
"""

from __future__ import annotations

import calendar
import json
import time
import uuid
from typing import Any

import aiohttp
from aiohttp import web

from modelcluster.api.errors import BadRequest
from modelcluster.api.streaming import SSE_CONTENT_TYPE, StreamParser
from modelcluster.gateway import openai_compat as compat
from modelcluster.gateway.native import GATEWAY, JSON_HEADERS
from modelcluster.gateway.proxy import Upstream
from modelcluster.gateway.state import TENANT, Gateway

CHAT_TASKS = frozenset({"chat", "image-text-to-text", "audio-text-to-text", "video-text-to-text"})
COMPLETION_TASKS = frozenset({"text-generation", "text2text-generation", "summarization", "translation"})


async def chat_completions(request: web.Request) -> web.StreamResponse:
    raw = await request.app[GATEWAY].read_body(request)
    return await _complete(request, compat.parse_request(compat.ChatCompletionRequest, raw), CHAT_TASKS)


async def completions(request: web.Request) -> web.StreamResponse:
    raw = await request.app[GATEWAY].read_body(request)
    return await _complete(request, compat.parse_request(compat.CompletionRequest, raw), COMPLETION_TASKS)


async def models(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    ids = {model.id: 0 for model in gateway.catalog.models if model.task in CHAT_TASKS | COMPLETION_TASKS}
    for cluster in gateway.clusters.in_namespace(str(request[TENANT])):
        spec = cluster.get("spec") or {}
        model_id = spec.get("model")
        task = (cluster.get("status") or {}).get("task") or spec.get("task") or _catalog_task(gateway, model_id)
        created = (cluster.get("metadata") or {}).get("creationTimestamp")
        if model_id and task in CHAT_TASKS | COMPLETION_TASKS:
            ids[model_id] = calendar.timegm(time.strptime(created, "%Y-%m-%dT%H:%M:%SZ")) if created else 0
    return web.json_response(compat.models_list(sorted(ids.items())))


def _catalog_task(gateway: Gateway, model_id: object) -> str | None:
    known = gateway.catalog.model(str(model_id)) if model_id else None
    return known.task if known is not None else None


async def _complete(request: web.Request, body: compat.OpenAIRequest, tasks: frozenset[str]) -> web.StreamResponse:
    gateway = request.app[GATEWAY]
    target = gateway.target(request, body.model)
    task = target.task or gateway.task_of(target)
    if task not in tasks:
        route = "chat/completions" if isinstance(body, compat.ChatCompletionRequest) else "completions"
        raise BadRequest(f"{body.model} serves {task}, which {route} cannot run", param="model")
    run_body = json.dumps(compat.to_run_body(body, task=task)).encode()
    await gateway.ensure(target)
    headers = {**JSON_HEADERS, **(compat.RUNTIME_STREAM_HEADERS if body.stream else {})}
    request_id, created = uuid.uuid4().hex, int(time.time())
    gateway.demand.start(target.key)
    try:
        upstream = await gateway.proxy.send(target.key, run_body, headers)
        if body.stream:
            return await _stream(request, gateway, upstream, body, request_id, created)
        return await _whole(upstream, body, request_id, created)
    finally:
        gateway.demand.finish(target.key)


async def _whole(upstream: Upstream, body: compat.OpenAIRequest, request_id: str, created: int) -> web.Response:
    try:
        payload = await upstream.response.read()
        status = upstream.response.status
        usage = compat.usage_from_headers(upstream.response.headers)
    finally:
        upstream.close(reuse=True)
    if status != 200:
        raise compat.runtime_error(status, payload)
    output: Any = json.loads(payload).get("output")
    build = compat.chat_completion if isinstance(body, compat.ChatCompletionRequest) else compat.completion
    answer = build(body.model, output, usage, created, request_id, stop=body.stop, max_tokens=body.max_new_tokens)
    return web.json_response(answer)


async def _stream(
    request: web.Request,
    gateway: Gateway,
    upstream: Upstream,
    body: compat.OpenAIRequest,
    request_id: str,
    created: int,
) -> web.StreamResponse:
    finished = False
    try:
        if upstream.response.status != 200:
            payload = await upstream.response.read()
            finished = True
            raise compat.runtime_error(upstream.response.status, payload)
        translator = compat.StreamTranslator.for_request(body, request_id, created)
        out = web.StreamResponse(headers={"Content-Type": SSE_CONTENT_TYPE, "Cache-Control": "no-cache"})
        await out.prepare(request)
        await out.write(translator.start())
        parser = StreamParser()
        try:
            async for chunk in upstream.response.content.iter_any():
                for event in parser.feed(chunk):
                    await out.write(translator.feed(event))
                if translator.finished:
                    break
            for event in parser.close():
                await out.write(translator.feed(event))
            await out.write(translator.close())
            finished = parser.finished
        except (TimeoutError, aiohttp.ClientPayloadError):
            gateway.metrics.upstream_errors.labels("protocol").inc()
            await out.write(translator.fail("the model's pod broke off its answer", status=502))
        await out.write_eof()
        return out
    finally:
        upstream.close(reuse=finished)
