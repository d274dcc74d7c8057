"""Mistral chat (``POST {base}/v1/chat/completions``, base ``https://api.mistral.ai``).

Request: ``Authorization: Bearer``; OpenAI-like but strict (unknown fields are 422 ``extra_forbidden``): ``max_tokens``,
``temperature``, ``top_p``, ``stop``, ``seed`` as ``random_seed``; no ``None`` values, no ``stream_options``
(the last chunk carries the usage anyway); ``top_k`` is dropped; images as ``image_url`` strings.
Errors: ``{"message"}``, ``{"detail"}`` or ``{"object": "error", "message": {...}, "type"}``; a valid key out of
quota is a bare 401 too.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from modelcluster.api.errors import ApiError
from modelcluster.gateway.providers.base import Answer, ChatRequest, Image, UpstreamRequest, bearer_headers, chat_body
from modelcluster.gateway.providers.errors import Kind, api_error, body_text, decode_json, retry_after_of
from modelcluster.gateway.providers.openai_like import ChunkDecoder, answer_of

name = "mistral"
default_base_url = "https://api.mistral.ai"
PATH = "/v1/chat/completions"


def request(chat: ChatRequest, key: str) -> UpstreamRequest:
    p = chat.params
    params = {
        "max_tokens": p.max_tokens,
        "temperature": p.temperature,
        "top_p": p.top_p,
        "stop": list(p.stop),
        "random_seed": p.seed,
    }
    return UpstreamRequest(PATH, bearer_headers(key), chat_body(chat, _image_url, params), chat.stream)


def _image_url(image: Image) -> object:
    return image.data_url  # Mistral takes the URL itself, not an object


def answer(body: Any) -> Answer:
    return answer_of(name, body)


def decoder() -> ChunkDecoder:
    return ChunkDecoder(name, lambda detail: error(500, json.dumps({"message": detail.get("message")}).encode(), {}))


def error(status: int, body: bytes, headers: Mapping[str, str]) -> ApiError:
    decoded = decode_json(body)
    message = body_text(body)
    type_ = ""
    if isinstance(decoded, Mapping):
        raw = decoded.get("message", decoded.get("detail"))
        message = raw if isinstance(raw, str) else json.dumps(raw) if raw is not None else message
        type_ = str(decoded.get("type") or "")
    kind: Kind = "other"
    if status == 401:
        kind = "auth"
    elif status == 429 or type_ == "rate_limit_error":
        kind = "rate_limit"
    elif status == 503:
        kind = "overloaded"
    return api_error(name, kind, status, message, retry_after_of(headers))
