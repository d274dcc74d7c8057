"""Cohere Chat v2 (``POST {base}/v2/chat``, base ``https://api.cohere.com``).

Request: ``Authorization: Bearer``; messages with role ``system``/``user``/``assistant``, images as ``image_url``
parts; ``max_tokens``, ``temperature``, ``top_p`` as ``p``, ``top_k`` as ``k``, ``stop`` as ``stop_sequences``,
``seed``.
Answer: the text items of ``message.content`` joined; usage from ``usage.tokens`` (``billed_units`` when absent).
Stream: named events; ``content-delta`` carries text, ``message-end`` the finish reason and usage (or an
``error``), then ``data: [DONE]``.
Errors: ``{"message"}`` (an edge proxy may answer HTML); 401 and 498 (invalid token) are a bad key, 429 a rate
limit, 503 overloaded.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from modelcluster.api.errors import ApiError, BadGateway
from modelcluster.api.streaming import Delta, TokenUsage, token_count
from modelcluster.gateway.providers.base import (
    Answer,
    ChatRequest,
    ProviderEvent,
    SSEMessage,
    StreamState,
    UpstreamRequest,
    bearer_headers,
    chat_body,
    url_object,
)
from modelcluster.gateway.providers.errors import Kind, api_error, body_text, decode_json, retry_after_of

name = "cohere"
default_base_url = "https://api.cohere.com"
PATH = "/v2/chat"


def request(chat: ChatRequest, key: str) -> UpstreamRequest:
    p = chat.params
    params = {
        "max_tokens": p.max_tokens,
        "temperature": p.temperature,
        "p": p.top_p,
        "k": p.top_k,
        "stop_sequences": list(p.stop),
        "seed": p.seed,
    }
    return UpstreamRequest(PATH, bearer_headers(key), chat_body(chat, url_object, params), chat.stream)


def usage_of(value: object) -> TokenUsage | None:
    if not isinstance(value, Mapping):
        return None
    counts = value.get("tokens")
    if not isinstance(counts, Mapping):
        counts = value.get("billed_units")
    if not isinstance(counts, Mapping):
        return None
    return TokenUsage(token_count(counts.get("input_tokens")), token_count(counts.get("output_tokens")))


def answer(body: Any) -> Answer:
    message = body.get("message") if isinstance(body, Mapping) else None
    if not isinstance(message, Mapping):
        raise BadGateway(f"{name} answered without a message")
    content = message.get("content")
    items = content if isinstance(content, list) else []
    text = "".join(
        str(item.get("text", "")) for item in items if isinstance(item, Mapping) and item.get("type") == "text"
    )
    reason = body.get("finish_reason")
    return Answer(text, reason if isinstance(reason, str) else None, usage_of(body.get("usage")), body)


class Decoder(StreamState):
    def feed(self, message: SSEMessage) -> list[ProviderEvent]:
        if self.finished:
            return []
        if message.data.strip() == "[DONE]":
            return self.done()
        payload = decode_json(message.data.encode())
        if not isinstance(payload, Mapping):
            return self.fail(BadGateway(f"{name} sent a malformed stream event"))
        kind = payload.get("type", message.event)
        raw_delta = payload.get("delta")
        delta: Mapping[str, Any] = raw_delta if isinstance(raw_delta, Mapping) else {}
        if kind == "content-delta":
            inner = delta.get("message")
            content = inner.get("content") if isinstance(inner, Mapping) else None
            text = content.get("text") if isinstance(content, Mapping) else None
            return [Delta(text)] if isinstance(text, str) and text else []
        if kind == "message-end":
            usage = usage_of(delta.get("usage"))
            if usage is not None:
                self.usage = usage
            failure = delta.get("error")
            if failure:
                return self.fail(api_error(name, "other", 500, str(failure)))
            return self.done()
        return []

    def close(self) -> list[ProviderEvent]:
        if self.finished:
            return []
        return self.fail(BadGateway(f"{name} ended its stream before message-end"))


def decoder() -> Decoder:
    return Decoder()


def error(status: int, body: bytes, headers: Mapping[str, str]) -> ApiError:
    decoded = decode_json(body)
    message = body_text(body)
    if isinstance(decoded, Mapping) and isinstance(decoded.get("message"), str):
        message = decoded["message"]
    kind: Kind = "other"
    if status in (401, 498):
        kind = "auth"
    elif status == 429:
        kind = "rate_limit"
    elif status == 503:
        kind = "overloaded"
    return api_error(name, kind, status, message, retry_after_of(headers))
