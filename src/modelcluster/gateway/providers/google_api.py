"""Google Gemini API (``POST {base}/v1beta/models/{model}:generateContent``, base
``https://generativelanguage.googleapis.com``; streams ``:streamGenerateContent?alt=sse``).

Request: the key in ``x-goog-api-key``, never in the URL; ``contents`` with roles ``user``/``model``; system
messages as ``systemInstruction``; ``generationConfig``: ``maxOutputTokens``, ``temperature``, ``topP``, ``topK``,
``stopSequences``, ``seed``. Images go inline as base64 (``inlineData``): the Gemini API does not fetch image URLs,
so an image by https URL is refused (422).
Answer: the text parts of ``candidates[0]`` joined (thought parts skipped); usage from ``usageMetadata``
(output = candidates + thoughts). Stream: each event a whole ``GenerateContentResponse``; the last carries the
finish reason and the complete usage; the body's end ends it.
Errors: ``{"error": {"code", "message", "status", "details"}}``; a bad key is **400** with reason
``API_KEY_INVALID`` (401 here), ``RESOURCE_EXHAUSTED`` 429 (``RetryInfo.retryDelay`` as Retry-After),
``UNAVAILABLE`` 503.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from modelcluster.api.errors import ApiError, BadGateway, InputError
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

name = "google"
default_base_url = "https://generativelanguage.googleapis.com"
AUTH_REASONS = frozenset({"API_KEY_INVALID", "API_KEY_EXPIRED", "API_KEY_SERVICE_BLOCKED"})


def path(model: str, stream: bool) -> str:
    model_path = quote(model, safe="-._~")
    if stream:
        return f"/v1beta/models/{model_path}:streamGenerateContent?alt=sse"
    return f"/v1beta/models/{model_path}:generateContent"


def request(chat: ChatRequest, key: str) -> UpstreamRequest:
    p = chat.params
    body: JSONDict = {"contents": [_content(message) for message in chat.turns]}
    if chat.system:
        body["systemInstruction"] = {"parts": [{"text": chat.system}]}
    config = {
        "maxOutputTokens": p.max_tokens,
        "temperature": p.temperature,
        "topP": p.top_p,
        "topK": p.top_k,
        "stopSequences": list(p.stop) or None,
        "seed": p.seed,
    }
    generation = {field: value for field, value in config.items() if value is not None}
    if generation:
        body["generationConfig"] = generation
    headers = {"x-goog-api-key": key, "Content-Type": "application/json"}
    return UpstreamRequest(path(chat.model, chat.stream), headers, body, chat.stream)


def _content(message: ChatMessage) -> JSONDict:
    parts: list[JSONDict] = []
    for part in message.parts:
        if isinstance(part, str):
            parts.append({"text": part})
        elif part.base64 is None:
            raise InputError("google: the Gemini API takes images inline; send the image as base64 or a data: URL")
        else:
            parts.append({"inlineData": {"mimeType": part.media_type, "data": part.base64}})
    return {"role": "model" if message.role == "assistant" else "user", "parts": parts}


def usage_of(value: object) -> TokenUsage | None:
    if not isinstance(value, Mapping):
        return None
    output = token_count(value.get("candidatesTokenCount")) + token_count(value.get("thoughtsTokenCount"))
    return TokenUsage(token_count(value.get("promptTokenCount")), output)


def _candidate(body: Any) -> Mapping[str, Any] | None:
    if not isinstance(body, Mapping):
        return None
    candidates = body.get("candidates")
    if not isinstance(candidates, list) or not candidates or not isinstance(candidates[0], Mapping):
        return None
    return candidates[0]


def _text(candidate: Mapping[str, Any]) -> str:
    content = candidate.get("content")
    parts = content.get("parts") if isinstance(content, Mapping) else None
    if not isinstance(parts, list):
        return ""
    return "".join(str(part.get("text", "")) for part in parts if isinstance(part, Mapping) and not part.get("thought"))


def answer(body: Any) -> Answer:
    candidate = _candidate(body)
    if candidate is None:
        feedback = body.get("promptFeedback") if isinstance(body, Mapping) else None
        reason = feedback.get("blockReason") if isinstance(feedback, Mapping) else None
        if reason:
            raise InputError(f"{name}: the prompt was blocked ({reason})")
        raise BadGateway(f"{name} answered without a candidate")
    reason = candidate.get("finishReason")
    return Answer(
        _text(candidate), reason if isinstance(reason, str) else None, usage_of(body.get("usageMetadata")), body
    )


class Decoder(StreamState):
    def __init__(self) -> None:
        super().__init__()
        self.finish_reason: str | None = None

    def feed(self, message: SSEMessage) -> list[ProviderEvent]:
        if self.finished:
            return []
        payload = decode_json(message.data.encode())
        if not isinstance(payload, Mapping):
            return self.fail(BadGateway(f"{name} sent a malformed stream event"))
        if isinstance(payload.get("error"), Mapping):
            return self.fail(_error_of(payload["error"], 0, {}))
        usage = usage_of(payload.get("usageMetadata"))
        if usage is not None:
            self.usage = usage
        candidate = _candidate(payload)
        if candidate is None:
            return []
        if isinstance(candidate.get("finishReason"), str):
            self.finish_reason = candidate["finishReason"]
        text = _text(candidate)
        return [Delta(text)] if text else []

    def close(self) -> list[ProviderEvent]:
        if self.finished:
            return []
        if self.finish_reason is None:
            return self.fail(BadGateway(f"{name} ended its stream before the answer finished"))
        return self.done()


def decoder() -> Decoder:
    return Decoder()


def error(status: int, body: bytes, headers: Mapping[str, str]) -> ApiError:
    decoded = decode_json(body)
    if isinstance(decoded, list) and decoded and isinstance(decoded[0], Mapping):
        decoded = decoded[0]  # the streaming endpoint answers errors as a one-element list
    detail = decoded.get("error") if isinstance(decoded, Mapping) else None
    if isinstance(detail, Mapping):
        return _error_of(detail, status, headers)
    return api_error(name, "other", status, body_text(body), retry_after_of(headers))


def _error_of(detail: Mapping[str, Any], status: int, headers: Mapping[str, str]) -> ApiError:
    code = detail.get("code")
    status = status or (code if isinstance(code, int) else 500)
    state = str(detail.get("status") or "")
    details = [item for item in detail.get("details") or [] if isinstance(item, Mapping)]
    reasons = {str(item.get("reason")) for item in details if item.get("reason")}
    retry_after = retry_after_of(headers) or _retry_delay(details)
    kind: Kind = "other"
    if reasons & AUTH_REASONS or status == 401 or state == "UNAUTHENTICATED":
        kind = "auth"
    elif status == 429 or state == "RESOURCE_EXHAUSTED":
        kind = "rate_limit"
    elif status == 503 or state == "UNAVAILABLE":
        kind = "overloaded"
    return api_error(name, kind, status, str(detail.get("message") or ""), retry_after)


def _retry_delay(details: list[Mapping[str, Any]]) -> int | None:
    for item in details:
        delay = item.get("retryDelay")
        if isinstance(delay, str) and delay.endswith("s"):
            try:
                return max(1, math.ceil(float(delay[:-1])))
            except ValueError:
                return None
    return None
