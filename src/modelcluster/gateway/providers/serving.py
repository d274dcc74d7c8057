"""Answering closed-model requests on each route family, from a :class:`~.service.Call`.

- native ``POST /models/v2/{provider}/{model}``: ``{"error": null, "output": {"role": "assistant", "content"},
  "provider": <the provider's raw answer>}`` with the token counts in ``X-Prompt-Tokens`` / ``X-Completion-Tokens``
  as open models answer; streams are raw text (``text/plain``), or the runtime's SSE framing when the client
  accepts ``text/event-stream``; an error after the 200 ends the stream as the runtime ends its own.
- OpenAI ``/chat/completions``: ``chat.completion`` bodies and chunks (usage when asked), ``: keep-alive``
  comments while the provider is silent, an error after the 200 as ``data: {"error": ...}`` then ``[DONE]``.
- OpenAI ``/responses``: :mod:`modelcluster.gateway.openai.responses`.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any

from aiohttp import web

from modelcluster.api.errors import ApiError
from modelcluster.api.inference import COMPLETION_TOKENS_HEADER, PROMPT_TOKENS_HEADER, RunRequest
from modelcluster.api.streaming import (
    DONE_EVENT,
    RAW_CONTENT_TYPE,
    SSE_CONTENT_TYPE,
    Delta,
    Done,
    TokenUsage,
    delta_event,
    error_event,
    raw_error,
    usage_event,
)
from modelcluster.gateway.openai.protocol import ChatCompletionRequest, openai_error
from modelcluster.gateway.openai.responses import ResponsesRequest, ResponsesStream, completion_status, response_object
from modelcluster.gateway.openai.serving_chat import CHAT
from modelcluster.gateway.openai.streaming import StreamTranslator
from modelcluster.gateway.providers.base import ChatMessage, ChatRequest, GenerationParams, ProviderEvent, StreamFailed
from modelcluster.gateway.providers.client import ProviderClient
from modelcluster.gateway.providers.service import Call, ProviderService, provider_key
from modelcluster.gateway.providers.unified import chat_from_run_request, chat_request
from modelcluster.gateway.request_keys import TENANT
from modelcluster.gateway.usage import REQUEST_USAGE_SINK

KEEPALIVE = b": keep-alive\n\n"
STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
#: OpenAI's finish reasons for each provider's.
FINISH_REASONS = {
    "stop": "stop",
    "end_turn": "stop",
    "stop_sequence": "stop",
    "STOP": "stop",
    "COMPLETE": "stop",
    "STOP_SEQUENCE": "stop",
    "length": "length",
    "max_tokens": "length",
    "MAX_TOKENS": "length",
    "model_length": "length",
    "content_filter": "content_filter",
    "refusal": "content_filter",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
}


def provider_model(model_id: str) -> str:
    """The provider's own name of the model: the id without its ``org/``."""
    return model_id.partition("/")[2]


def _call(
    service: ProviderService, client: ProviderClient, request: web.Request, chat: ChatRequest, model_id: str, route: str
) -> Call:
    key = provider_key(request.headers, model_id)
    sink = request.get(REQUEST_USAGE_SINK)
    return Call(service, client, chat, key, str(request.get(TENANT, "")), model_id, route, on_finish=sink)


def usage_headers(usage: TokenUsage | None) -> dict[str, str]:
    if usage is None:
        return {}
    return {PROMPT_TOKENS_HEADER: str(usage.prompt_tokens), COMPLETION_TOKENS_HEADER: str(usage.completion_tokens)}


# --- native ------------------------------------------------------------------------------------------------------


async def serve_native(
    request: web.Request, service: ProviderService, client: ProviderClient, model_id: str, body: RunRequest
) -> web.StreamResponse:
    chat = chat_from_run_request(body, provider_model(model_id))
    call = _call(service, client, request, chat, model_id, "native")
    if not chat.stream:
        answer = await call.answer()
        output = {"role": "assistant", "content": answer.text}
        payload = {"error": None, "output": output, "provider": answer.raw}
        return web.json_response(payload, headers=usage_headers(answer.usage))
    exchange = await call.open()
    sse = SSE_CONTENT_TYPE in request.headers.get("Accept", "")
    out = web.StreamResponse(headers={"Content-Type": SSE_CONTENT_TYPE if sse else RAW_CONTENT_TYPE, **STREAM_HEADERS})
    await out.prepare(request)
    usage: TokenUsage | None = None
    async with aclosing(call.events(exchange)) as events:
        async for event in events:
            if isinstance(event, Delta):
                await out.write((delta_event(event.text) if sse else event.text).encode())
            elif isinstance(event, TokenUsage):
                usage = event
            elif isinstance(event, Done):
                if sse:
                    await out.write((usage_event(usage or TokenUsage()) + DONE_EVENT).encode())
            elif isinstance(event, StreamFailed):
                message = event.error.message
                await out.write((error_event(message) if sse else raw_error(message)).encode())
    await out.write_eof()
    return out


# --- OpenAI chat completions -------------------------------------------------------------------------------------


def chat_from_openai(body: ChatCompletionRequest) -> ChatRequest:
    messages = [
        ChatMessage("system" if message.role == "developer" else message.role, (message.text,))
        for message in body.messages
    ]
    params = GenerationParams(
        max_tokens=body.token_limit,
        temperature=body.temperature,
        top_p=body.top_p,
        stop=tuple(body.stop),
        seed=body.seed,
    )
    return chat_request(provider_model(body.model), messages, params, body.stream)


async def serve_chat_completion(
    request: web.Request, service: ProviderService, client: ProviderClient, body: ChatCompletionRequest
) -> web.StreamResponse:
    chat = chat_from_openai(body)
    call = _call(service, client, request, chat, body.model, "openai.chat")
    request_id, created = uuid.uuid4().hex, int(time.time())
    if not chat.stream:
        answer = await call.answer()
        output = {"role": "assistant", "content": answer.text}
        whole = CHAT.response(body.model, output, answer.usage, created, request_id, max_tokens=body.token_limit)
        if answer.finish_reason in FINISH_REASONS:
            whole["choices"][0]["finish_reason"] = FINISH_REASONS[answer.finish_reason]
        return web.json_response(whole)
    exchange = await call.open()
    translator = StreamTranslator(
        CHAT, body.model, request_id, created, include_usage=body.include_usage, max_tokens=body.token_limit
    )
    out = await _sse_response(request)
    await out.write(translator.start())
    async with aclosing(call.events(exchange, client.settings.keepalive_s)) as events:
        async for event in events:
            if event is None:
                await out.write(KEEPALIVE)
            elif isinstance(event, StreamFailed):
                await out.write(translator.fail(event.error.message, status=event.error.openai_status))
            else:
                await out.write(translator.feed(event))
    await out.write(translator.close())
    await out.write_eof()
    return out


async def _sse_response(request: web.Request) -> web.StreamResponse:
    out = web.StreamResponse(headers={"Content-Type": SSE_CONTENT_TYPE, **STREAM_HEADERS})
    await out.prepare(request)
    return out


# --- OpenAI responses --------------------------------------------------------------------------------------------


def chat_from_responses(body: ResponsesRequest) -> ChatRequest:
    messages = [ChatMessage(_role(role), (text,)) for role, text in body.messages()]
    params = GenerationParams(max_tokens=body.max_output_tokens, temperature=body.temperature, top_p=body.top_p)
    return chat_request(provider_model(body.model), messages, params, body.stream)


def _role(role: str) -> Any:
    return role if role in ("system", "user", "assistant") else "user"


async def serve_responses(
    request: web.Request, service: ProviderService, client: ProviderClient, body: ResponsesRequest
) -> web.StreamResponse:
    chat = chat_from_responses(body)
    call = _call(service, client, request, chat, body.model, "openai.responses")
    response_id, created = uuid.uuid4().hex, int(time.time())
    if not chat.stream:
        answer = await call.answer()
        status = completion_status(answer.usage, body.max_output_tokens)
        whole = response_object(
            body, body.model, response_id, created, text=answer.text, usage=answer.usage, status=status
        )
        return web.json_response(whole)
    exchange = await call.open()
    return await write_responses_stream(
        request, body, response_id, created, call.events(exchange, client.settings.keepalive_s)
    )


async def write_responses_stream(
    request: web.Request,
    body: ResponsesRequest,
    response_id: str,
    created: int,
    events: AsyncGenerator[ProviderEvent | None, None],
) -> web.StreamResponse:
    """The named events of a streamed response from stream events (``None``: a keep-alive comment)."""
    stream = ResponsesStream(body, body.model, response_id, created)
    out = await _sse_response(request)
    await out.write(stream.start())
    usage: TokenUsage | None = None
    async with aclosing(events) as iterator:
        async for event in iterator:
            if event is None:
                await out.write(KEEPALIVE)
            elif isinstance(event, Delta):
                await out.write(stream.delta(event.text))
            elif isinstance(event, TokenUsage):
                usage = event
            elif isinstance(event, Done):
                await out.write(stream.done(usage))
            else:
                await out.write(stream.fail(event.error.message, _code(event.error), usage))
    if not stream.finished:
        await out.write(stream.fail("the model stream ended before the answer finished", "server_error", usage))
    await out.write_eof()
    return out


def _code(error: ApiError) -> str:
    code = openai_error(error.openai_status, error.message)["error"]["code"]
    return str(code or ("server_error" if error.status >= 500 else "invalid_request_error"))
