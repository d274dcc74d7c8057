"""The OpenAI-compatible routes: ``/models/v2/openai/v1/chat/completions``, ``/completions``, ``/responses``
(:mod:`.serving_responses`) and ``/models``.

Each completion route is served by its family (:data:`~.serving_chat.CHAT`, :data:`~.serving_completion.COMPLETION`):
the request is checked against the model's task, translated into the runtime's unified body, sent through the same
router as the native API (hold, wake, least outstanding), and answered in OpenAI's shapes, streaming as SSE ending
with ``data: [DONE]``. :func:`add_routes` registers them on the gateway's app.
"""

from __future__ import annotations

import calendar
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

from modelcluster.api.errors import BadRequest
from modelcluster.api.streaming import SSE_CONTENT_TYPE, Done, Failure, StreamParser
from modelcluster.gateway.metering.http import (
    METERING,
    draft_of,
    meter_headers,
    meter_provider,
    observe_upstream,
    reading_of,
    set_meter,
    stream_metered,
)
from modelcluster.gateway.native import GATEWAY, JSON_HEADERS, is_open
from modelcluster.gateway.openai.protocol import ChatCompletionRequest, RequestT, models_list
from modelcluster.gateway.openai.serving import OpenAIServing
from modelcluster.gateway.openai.serving_chat import CHAT
from modelcluster.gateway.openai.serving_completion import COMPLETION
from modelcluster.gateway.openai.serving_responses import responses
from modelcluster.gateway.openai.streaming import StreamTranslator
from modelcluster.gateway.openai.translate import RUNTIME_STREAM_HEADERS, runtime_error, usage_from_headers
from modelcluster.gateway.providers.serving import serve_chat_completion
from modelcluster.gateway.proxy import Upstream
from modelcluster.gateway.request_keys import TENANT
from modelcluster.gateway.state import Gateway, Target
from modelcluster.kube.objects import metadata_of

SERVED_TASKS = CHAT.tasks | COMPLETION.tasks


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_post("/models/v2/openai/v1/chat/completions", chat_completions, name="openai_chat")
    router.add_post("/models/v2/openai/v1/completions", completions, name="openai_completions")
    router.add_post("/models/v2/openai/v1/responses", responses, name="openai_responses")
    router.add_get("/models/v2/openai/v1/models", models, name="openai_models")


async def chat_completions(request: web.Request) -> web.StreamResponse:
    return await _serve(request, CHAT)


async def completions(request: web.Request) -> web.StreamResponse:
    return await _serve(request, COMPLETION)


async def models(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    ids = {model.id: 0 for model in gateway.catalog.models if model.task in SERVED_TASKS}
    for cluster in gateway.clusters.in_namespace(str(request[TENANT])):
        spec = cluster.get("spec") or {}
        model_id = spec.get("model")
        task = (cluster.get("status") or {}).get("task") or spec.get("task") or _catalog_task(gateway, model_id)
        created = metadata_of(cluster).get("creationTimestamp")
        if model_id and task in SERVED_TASKS:
            ids[model_id] = calendar.timegm(time.strptime(created, "%Y-%m-%dT%H:%M:%SZ")) if created else 0
    return web.json_response(models_list(sorted(ids.items())))


def _catalog_task(gateway: Gateway, model_id: object) -> str | None:
    known = gateway.catalog.model(str(model_id)) if model_id else None
    return known.task if known is not None else None


@dataclass(frozen=True)
class _Reply:
    """What answering a request needs of it, kept while the request waits instead of the parsed body."""

    model: str
    stop: tuple[str, ...]
    max_new_tokens: int
    request_id: str
    created: int
    translator: StreamTranslator | None  # for a stream


async def _serve(request: web.Request, serving: OpenAIServing[RequestT]) -> web.StreamResponse:
    gateway = request.app[GATEWAY]
    body = await gateway.parse(await gateway.read_body(request), serving.parse)
    target = gateway.target(request, body.model)
    provider = gateway.providers.client_for(body.model, open_model=is_open(target))
    if provider is not None:
        if not isinstance(body, ChatCompletionRequest):
            raise BadRequest(f"{body.model} is a closed chat model: use chat/completions or responses", param="model")
        meter_provider(request, body.model, "chat", provider.name)
        request.app[METERING].check_budget(str(request[TENANT]))
        return await serve_chat_completion(request, gateway.providers, provider, body)
    run_body, reply = _prepare(request, gateway, serving, body, target)
    await gateway.ensure(target)
    headers = {**JSON_HEADERS, **(RUNTIME_STREAM_HEADERS if reply.translator is not None else {})}
    gateway.demand.start(target.key)
    started = time.monotonic()
    try:
        upstream = await gateway.proxy.send(target.key, run_body, headers)
        if reply.translator is not None:
            return await _stream(request, gateway, upstream, reply.translator, started)
        try:
            return await _whole(gateway, upstream, serving, reply)
        finally:
            response = upstream.response
            observe_upstream(draft_of(request), response.status, response.headers, time.monotonic() - started)
    finally:
        gateway.demand.finish(target.key)


def _prepare(
    request: web.Request, gateway: Gateway, serving: OpenAIServing[RequestT], body: RequestT, target: Target
) -> tuple[bytes, _Reply]:
    """The runtime's body as bytes, and what the answer needs; the request metered and its budget checked."""
    task = target.task or gateway.task_of(target)
    metering = request.app[METERING]
    set_meter(draft_of(request), target.model_id, task, "/".join(target.key), metering.meter(target.model_id, task))
    if task not in serving.tasks:
        raise BadRequest(f"{body.model} serves {task}, which {serving.route} cannot run", param="model")
    metering.check_budget(str(request[TENANT]))
    run_body = json.dumps(serving.run_body(body, task=task)).encode()
    request_id, created = uuid.uuid4().hex, int(time.time())
    translator = serving.translator(body, request_id, created) if body.stream else None
    draft = draft_of(request)
    if translator is not None and draft is not None:
        translator.usage_extra = lambda: reading_of(draft).usage_fields()
    reply = _Reply(body.model, tuple(body.stop), body.max_new_tokens, request_id, created, translator)
    return run_body, reply


async def _whole(gateway: Gateway, upstream: Upstream, serving: OpenAIServing[RequestT], reply: _Reply) -> web.Response:
    finished = False
    try:
        payload = await gateway.proxy.read_answer(upstream.response)
        finished = True
        status = upstream.response.status
        usage = usage_from_headers(upstream.response.headers)
    finally:
        upstream.close(reuse=finished)
    if status != 200:
        raise runtime_error(status, payload)
    output: Any = json.loads(payload).get("output")
    answer = serving.response(
        reply.model, output, usage, reply.created, reply.request_id, stop=reply.stop, max_tokens=reply.max_new_tokens
    )
    return web.json_response(answer)


async def _stream(
    request: web.Request, gateway: Gateway, upstream: Upstream, translator: StreamTranslator, started: float
) -> web.StreamResponse:
    finished = False
    draft = draft_of(request)
    try:
        if upstream.response.status != 200:
            payload = await gateway.proxy.read_answer(upstream.response)
            finished = True
            raise runtime_error(upstream.response.status, payload)
        sse_headers = {"Content-Type": SSE_CONTENT_TYPE, "Cache-Control": "no-cache", **meter_headers(draft)}
        out = web.StreamResponse(headers=sse_headers)
        await out.prepare(request)
        await out.write(translator.start())
        parser = StreamParser()
        try:
            async for chunk in upstream.response.content.iter_any():
                for event in parser.feed(chunk):
                    if isinstance(event, (Done, Failure)):
                        stream_metered(draft, parser.inference_seconds, translator.usage, time.monotonic() - started)
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
        if draft is not None and not draft.inference_seconds:
            # Broken off before its end: the time the pod spent until then.
            stream_metered(draft, None, translator.usage, time.monotonic() - started)
        upstream.close(reuse=finished)
