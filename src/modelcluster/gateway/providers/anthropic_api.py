"""Anthropic Messages (``POST {base}/v1/messages``, base ``https://api.anthropic.com``).

Request: ``x-api-key`` and ``anthropic-version: 2023-06-01``; system messages go to the top-level ``system``;
consecutive turns of one role are merged; ``max_tokens`` is required (:data:`DEFAULT_MAX_TOKENS` when the request
has none); ``temperature``, ``top_p``, ``top_k``, ``stop`` as ``stop_sequences``; ``seed`` has no Anthropic name
and is dropped; images as ``image`` blocks with a ``base64`` or ``url`` source.
Answer: the ``text`` blocks of ``content`` joined; usage input = ``input_tokens`` plus the cache reads and writes.
Stream: named events; input tokens in ``message_start``, the cumulative output count in the last
``message_delta``; ``message_stop`` ends it; ``event: error`` after the 200 fails it (``overloaded_error``: 503).
Errors by ``error.type``: ``authentication_error`` 401, ``rate_limit_error`` 429, ``overloaded_error`` (HTTP 529)
503; a spend limit (400 "usage limits") is a rate limit too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from modelcluster.api.errors import ApiError, BadGateway
from modelcluster.api.streaming import Delta, TokenUsage, token_count
from modelcluster.gateway.providers.base import (
    Answer,
    ChatMessage,
    ChatRequest,
    JSONDict,
    ProviderEvent,
    SSEMessage,
    StreamState,
    UpstreamRequest,
)
from modelcluster.gateway.providers.errors import Kind, api_error, body_text, decode_json, retry_after_of

name = "anthropic"
default_base_url = "https://api.anthropic.com"
PATH = "/v1/messages"
API_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096


def request(chat: ChatRequest, key: str) -> UpstreamRequest:
    p = chat.params
    body: JSONDict = {
        "model": chat.model,
        "max_tokens": p.max_tokens or DEFAULT_MAX_TOKENS,
        "messages": _turns(chat.turns),
    }
    optional = {
        "system": chat.system or None,
        "temperature": p.temperature,
        "top_p": p.top_p,
        "top_k": p.top_k,
        "stop_sequences": list(p.stop) or None,
    }
    body.update({field: value for field, value in optional.items() if value is not None})
    if chat.stream:
        body["stream"] = True
    headers = {"x-api-key": key, "anthropic-version": API_VERSION, "Content-Type": "application/json"}
    return UpstreamRequest(PATH, headers, body, chat.stream)


def _turns(messages: tuple[ChatMessage, ...]) -> list[JSONDict]:
    turns: list[JSONDict] = []
    for message in messages:
        blocks = _blocks(message)
        if turns and turns[-1]["role"] == message.role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": message.role, "content": blocks})
    return turns


def _blocks(message: ChatMessage) -> list[JSONDict]:
    blocks: list[JSONDict] = []
    for part in message.parts:
        if isinstance(part, str):
            blocks.append({"type": "text", "text": part})
        elif part.url is not None:
            blocks.append({"type": "image", "source": {"type": "url", "url": part.url}})
        else:
            source = {"type": "base64", "media_type": part.media_type, "data": part.base64}
            blocks.append({"type": "image", "source": source})
    return blocks


def usage_of(value: object) -> TokenUsage | None:
    if not isinstance(value, Mapping):
        return None
    prompt = sum(
        token_count(value.get(field))
        for field in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
    )
    return TokenUsage(prompt, token_count(value.get("output_tokens")))


def answer(body: Any) -> Answer:
    if not isinstance(body, Mapping) or not isinstance(body.get("content"), list):
        raise BadGateway(f"{name} answered without content")
    text = "".join(
        str(block.get("text", ""))
        for block in body["content"]
        if isinstance(block, Mapping) and block.get("type") == "text"
    )
    reason = body.get("stop_reason")
    return Answer(text, reason if isinstance(reason, str) else None, usage_of(body.get("usage")), body)


class Decoder(StreamState):
    def __init__(self) -> None:
        super().__init__()
        self.prompt_tokens = 0
        self.completion_tokens = 0

    def feed(self, message: SSEMessage) -> list[ProviderEvent]:
        if self.finished:
            return []
        payload = decode_json(message.data.encode())
        if not isinstance(payload, Mapping):
            return self.fail(BadGateway(f"{name} sent a malformed stream event"))
        kind = payload.get("type", message.event)
        if kind == "message_start":
            start = payload.get("message")
            usage = usage_of(start.get("usage")) if isinstance(start, Mapping) else None
            if usage is not None:
                self.prompt_tokens = usage.prompt_tokens
                self._count()
        elif kind == "content_block_delta":
            delta = payload.get("delta")
            if isinstance(delta, Mapping) and delta.get("type") == "text_delta" and delta.get("text"):
                return [Delta(str(delta["text"]))]
        elif kind == "message_delta":
            usage_value = payload.get("usage")
            if isinstance(usage_value, Mapping) and "output_tokens" in usage_value:
                # Cumulative: the last one counts, not the sum.
                self.completion_tokens = token_count(usage_value.get("output_tokens"))
                if "input_tokens" in usage_value:
                    self.prompt_tokens = usage_of(usage_value).prompt_tokens  # type: ignore[union-attr]
                self._count()
        elif kind == "message_stop":
            return self.done()
        elif kind == "error":
            detail = payload.get("error")
            return self.fail(_error_of(detail if isinstance(detail, Mapping) else {}, 200, {}))
        return []

    def close(self) -> list[ProviderEvent]:
        if self.finished:
            return []
        return self.fail(BadGateway(f"{name} ended its stream before message_stop"))

    def _count(self) -> None:
        self.usage = TokenUsage(self.prompt_tokens, self.completion_tokens)


def decoder() -> Decoder:
    return Decoder()


def error(status: int, body: bytes, headers: Mapping[str, str]) -> ApiError:
    decoded = decode_json(body)
    detail = decoded.get("error") if isinstance(decoded, Mapping) else None
    if isinstance(detail, Mapping):
        return _error_of(detail, status, headers)
    return api_error(name, "other", status, body_text(body), retry_after_of(headers))


_KINDS: dict[str, Kind] = {
    "authentication_error": "auth",
    "rate_limit_error": "rate_limit",
    "overloaded_error": "overloaded",
}
_STATUS_OF_TYPE = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}


def _error_of(detail: Mapping[str, Any], status: int, headers: Mapping[str, str]) -> ApiError:
    type_ = str(detail.get("type") or "")
    message = str(detail.get("message") or "")
    kind = _KINDS.get(type_, "other")
    if type_ == "invalid_request_error" and "usage limits" in message.lower():
        kind = "rate_limit"
    if status == 200:  # an error after the 200: the status its type stands for
        status = _STATUS_OF_TYPE.get(type_, 500)
    return api_error(name, kind, status, message, retry_after_of(headers))
