"""``POST /responses`` for open chat models (through the router to their pods) and closed ones (their providers)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncGenerator
from typing import Any

import aiohttp
from aiohttp import web

from modelcluster.api.errors import BadGateway, BadRequest, InferenceError
from modelcluster.api.streaming import Delta, Done, Failure, StreamParser, TokenUsage
from modelcluster.gateway.metering.http import (
    METERING,
    draft_of,
    meter_provider,
    observe_upstream,
    set_meter,
    stream_metered,
)
from modelcluster.gateway.native import GATEWAY, JSON_HEADERS, is_open
from modelcluster.gateway.openai.protocol import DEFAULT_MAX_TOKENS, JSONDict
from modelcluster.gateway.openai.responses import (
    ResponsesRequest,
    completion_status,
    parse_responses_request,
    response_object,
)
from modelcluster.gateway.openai.serving_chat import CHAT_TASKS
from modelcluster.gateway.openai.translate import RUNTIME_STREAM_HEADERS, output_text, runtime_error, usage_from_headers
from modelcluster.gateway.providers.base import ProviderEvent, StreamFailed
from modelcluster.gateway.providers.serving import serve_responses, write_responses_stream
from modelcluster.gateway.proxy import Upstream
from modelcluster.gateway.request_keys import TENANT
from modelcluster.gateway.state import Gateway


async def responses(request: web.Request) -> web.StreamResponse:
    gateway = request.app[GATEWAY]
    body = await gateway.parse(await gateway.read_body(request), parse_responses_request)
    target = gateway.target(request, body.model)
    provider = gateway.providers.client_for(body.model, open_model=is_open(target))
    metering, draft = request.app[METERING], draft_of(request)
    if provider is not None:
        meter_provider(request, body.model, "chat", provider.name)
        metering.check_budget(str(request[TENANT]))
        return await serve_responses(request, gateway.providers, provider, body)
    task = target.task or gateway.task_of(target)
    if task not in CHAT_TASKS:
        raise BadRequest(f"{body.model} serves {task}, which responses cannot run", param="model")
    set_meter(draft, target.model_id, task, "/".join(target.key), metering.meter(target.model_id, task))
    metering.check_budget(str(request[TENANT]))
    run_body = json.dumps(runtime_body(body)).encode()
    await gateway.ensure(target)
    headers = {**JSON_HEADERS, **(RUNTIME_STREAM_HEADERS if body.stream else {})}
    response_id, created = uuid.uuid4().hex, int(time.time())
    gateway.demand.start(target.key)
    started = time.monotonic()
    try:
        upstream = await gateway.proxy.send(target.key, run_body, headers)
        if body.stream:
            if upstream.response.status != 200:
                payload = await _read(gateway, upstream)
                raise runtime_error(upstream.response.status, payload)
            events = runtime_events(gateway, upstream)
            try:
                return await write_responses_stream(request, body, response_id, created, events)
            finally:
                stream_metered(draft, None, None, time.monotonic() - started)  # the gateway's time to the end
        payload = await _read(gateway, upstream)
        observe_upstream(draft, upstream.response.status, upstream.response.headers, time.monotonic() - started)
        if upstream.response.status != 200:
            raise runtime_error(upstream.response.status, payload)
        usage = usage_from_headers(upstream.response.headers)
        text = output_text(json.loads(payload).get("output"))
        status = completion_status(usage, body.max_output_tokens or DEFAULT_MAX_TOKENS)
        whole = response_object(body, body.model, response_id, created, text=text, usage=usage, status=status)
        return web.json_response(whole)
    finally:
        gateway.demand.finish(target.key)


def runtime_body(body: ResponsesRequest) -> JSONDict:
    """The runtime's ``/run`` body: the messages (``instructions`` as the system message) and generation params."""
    params: dict[str, Any] = {"max_new_tokens": body.max_output_tokens or DEFAULT_MAX_TOKENS}
    if body.temperature == 0:
        params["do_sample"] = False
    elif body.temperature is not None or body.top_p is not None:
        params["do_sample"] = True
        params.update(
            {
                name: value
                for name, value in (("temperature", body.temperature), ("top_p", body.top_p))
                if value is not None
            }
        )
    messages = [{"role": role, "content": text} for role, text in body.messages()]
    return {"messages": messages, "params": params, "stream": body.stream}


async def _read(gateway: Gateway, upstream: Upstream) -> bytes:
    finished = False
    try:
        payload = await gateway.proxy.read_answer(upstream.response)
        finished = True
        return payload
    finally:
        upstream.close(reuse=finished)


async def runtime_events(gateway: Gateway, upstream: Upstream) -> AsyncGenerator[ProviderEvent | None, None]:
    """The runtime's SSE stream as stream events; the pod's connection is closed (or reused) at the end."""
    parser = StreamParser()
    try:
        try:
            async for chunk in upstream.response.content.iter_any():
                for event in parser.feed(chunk):
                    yield _event(event)
                if parser.finished:
                    break
            for event in parser.close():
                yield _event(event)
        except (TimeoutError, aiohttp.ClientPayloadError):
            gateway.metrics.upstream_errors.labels("protocol").inc()
            yield StreamFailed(BadGateway("the model's pod broke off its answer"))
    finally:
        upstream.close(reuse=parser.finished)


def _event(event: Delta | TokenUsage | Done | Failure) -> ProviderEvent:
    return StreamFailed(InferenceError(event.message)) if isinstance(event, Failure) else event
