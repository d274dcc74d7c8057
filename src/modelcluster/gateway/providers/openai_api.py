"""OpenAI Chat Completions (``POST {base}/chat/completions``, base ``https://api.openai.com/v1``).

Request: ``Authorization: Bearer``; messages with role ``system``/``user``/``assistant``, images as ``image_url``
parts; ``max_tokens`` goes as ``max_completion_tokens`` (``max_tokens`` is deprecated and refused by o-series
models), ``temperature``, ``top_p``, ``stop``, ``seed``; ``top_k`` has no OpenAI name and is dropped. A stream asks
``stream_options.include_usage`` so that the last chunk carries the token counts.
Errors: ``{"error": {"message", "type", "code"}}``; 401 ``invalid_api_key``, 429 ``rate_limit_exceeded`` or
``insufficient_quota``, 5xx; in a stream, ``data: {"error": ...}`` after the 200.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from modelcluster.api.errors import ApiError
from modelcluster.gateway.providers.base import (
    Answer,
    ChatRequest,
    UpstreamRequest,
    bearer_headers,
    chat_body,
    url_object,
)
from modelcluster.gateway.providers.errors import Kind, api_error, body_text, decode_json, retry_after_of
from modelcluster.gateway.providers.openai_like import ChunkDecoder, answer_of

name = "openai"
default_base_url = "https://api.openai.com/v1"
PATH = "/chat/completions"


def request(chat: ChatRequest, key: str) -> UpstreamRequest:
    p = chat.params
    params = {
        "max_completion_tokens": p.max_tokens,
        "temperature": p.temperature,
        "top_p": p.top_p,
        "stop": list(p.stop),
        "seed": p.seed,
    }
    body = chat_body(chat, url_object, params)
    if chat.stream:
        body["stream_options"] = {"include_usage": True}
    return UpstreamRequest(PATH, bearer_headers(key), body, chat.stream)


def answer(body: Any) -> Answer:
    return answer_of(name, body)


def decoder() -> ChunkDecoder:
    return ChunkDecoder(name, lambda error: _error_of(error, 500, {}))


def error(status: int, body: bytes, headers: Mapping[str, str]) -> ApiError:
    decoded = decode_json(body)
    detail = decoded.get("error") if isinstance(decoded, Mapping) else None
    if isinstance(detail, Mapping):
        return _error_of(detail, status, headers)
    return api_error(name, "other", status, body_text(body), retry_after_of(headers))


def _error_of(detail: Mapping[str, Any], status: int, headers: Mapping[str, str]) -> ApiError:
    type_, code = str(detail.get("type") or ""), str(detail.get("code") or "")
    kind: Kind = "other"
    if code == "invalid_api_key" or type_ == "authentication_error" or status == 401:
        kind = "auth"
    elif status == 429 or code in ("rate_limit_exceeded", "insufficient_quota") or type_ == "rate_limit_error":
        kind = "rate_limit"
    elif status == 503 or type_ in ("overloaded", "overloaded_error") or code == "overloaded":
        kind = "overloaded"
    return api_error(name, kind, status, str(detail.get("message") or ""), retry_after_of(headers))
