"""What OpenAI's Chat Completions and Mistral's chat share: the answer, the data-only SSE stream, ``[DONE]``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from modelcluster.api.errors import ApiError, BadGateway
from modelcluster.api.streaming import Delta, TokenUsage, token_count
from modelcluster.gateway.providers.base import Answer, ProviderEvent, SSEMessage, StreamState
from modelcluster.gateway.providers.errors import decode_json

ErrorOf = Callable[[Mapping[str, Any]], ApiError]


def usage_of(value: object) -> TokenUsage | None:
    """``{"prompt_tokens", "completion_tokens"}``; ``None`` when absent."""
    if not isinstance(value, Mapping):
        return None
    return TokenUsage(token_count(value.get("prompt_tokens")), token_count(value.get("completion_tokens")))


def answer_of(provider: str, body: Any) -> Answer:
    """``choices[0].message.content``, ``finish_reason`` and ``usage`` of a ``chat.completion``."""
    choice = _first_choice(body)
    if choice is None:
        raise BadGateway(f"{provider} answered without a choice")
    message = choice.get("message") if isinstance(choice.get("message"), Mapping) else {}
    content = message.get("content") if isinstance(message, Mapping) else None
    text = content if isinstance(content, str) else _joined_parts(content)
    reason = choice.get("finish_reason")
    return Answer(text, reason if isinstance(reason, str) else None, usage_of(body.get("usage")), body)


def _first_choice(body: Any) -> Mapping[str, Any] | None:
    if not isinstance(body, Mapping):
        return None
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], Mapping):
        return None
    return choices[0]


def _joined_parts(content: object) -> str:
    if not isinstance(content, list):
        return ""
    return "".join(str(part.get("text", "")) for part in content if isinstance(part, Mapping))


class ChunkDecoder(StreamState):
    """``data: {chat.completion.chunk}`` events ending with ``data: [DONE]``; an ``error`` payload fails it."""

    def __init__(self, provider: str, error_of: ErrorOf) -> None:
        super().__init__()
        self.provider = provider
        self.error_of = error_of
        self.finish_reason: str | None = None

    def feed(self, message: SSEMessage) -> list[ProviderEvent]:
        if self.finished:
            return []
        if message.data.strip() == "[DONE]":
            return self.done()
        payload = decode_json(message.data.encode())
        if not isinstance(payload, Mapping):
            return self.fail(BadGateway(f"{self.provider} sent a malformed stream event"))
        if isinstance(payload.get("error"), Mapping):
            return self.fail(self.error_of(payload["error"]))
        events: list[ProviderEvent] = []
        usage = usage_of(payload.get("usage"))
        if usage is not None:
            self.usage = usage
        choice = _first_choice(payload)
        if choice is not None:
            delta = choice.get("delta")
            content = delta.get("content") if isinstance(delta, Mapping) else None
            if isinstance(content, str) and content:
                events.append(Delta(content))
            reason = choice.get("finish_reason")
            if isinstance(reason, str):
                self.finish_reason = reason
        return events

    def close(self) -> list[ProviderEvent]:
        if self.finished:
            return []
        if self.finish_reason is not None:
            return self.done()
        return self.fail(BadGateway(f"{self.provider} ended its stream before the answer finished"))
