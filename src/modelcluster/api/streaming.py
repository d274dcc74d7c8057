"""The runtime's stream framing: what ``/run`` writes when it streams, and the parser the gateway reads it with.

Raw text streams (``text/plain``) are the text deltas as they come; a failure after the headers
is a last line ``\n[error] <message>``. SSE streams (``text/event-stream``) are events
``data: {"error": null, "output": "<delta>"}``; a finished generation sends one more event with
its token counts (``"output": "", "usage": {"prompt_tokens", "completion_tokens"}``) and then
``data: [DONE]``; a failure is ``data: {"error": "<message>", "output": null}`` and nothing follows.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from modelcluster.api.metering import INFERENCE_SECONDS_FIELD, parse_seconds

SSE_CONTENT_TYPE = "text/event-stream"
RAW_MEDIA_TYPE = "text/plain"
RAW_CONTENT_TYPE = f"{RAW_MEDIA_TYPE}; charset=utf-8"
DONE_EVENT = "data: [DONE]\n\n"
#: The ``Accept`` header that asks the runtime for SSE rather than raw text.
SSE_ACCEPT = {"Accept": SSE_CONTENT_TYPE}


@dataclass(frozen=True)
class TokenUsage:
    """What a generation cost: the tokens of the encoded prompt and the tokens generated."""

    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def as_dict(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }

    @classmethod
    def from_mapping(cls, value: object) -> TokenUsage | None:
        """``{"prompt_tokens": n, "completion_tokens": m}``; ``None`` unless it is a mapping; bad counts read 0."""
        if not isinstance(value, Mapping):
            return None
        return cls(token_count(value.get("prompt_tokens")), token_count(value.get("completion_tokens")))


def token_count(value: object) -> int:
    """A token count as a peer sent it (a number or digits); anything else reads 0."""
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return max(value, 0)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return 0


def sse_event(payload: Mapping[str, Any]) -> str:
    """One server-sent event carrying ``payload`` as JSON."""
    return f"data: {json.dumps(payload)}\n\n"


def delta_event(text: str) -> str:
    return sse_event({"error": None, "output": text})


def usage_event(usage: TokenUsage | None, inference_seconds: float | None = None) -> str:
    """The event sent right before ``[DONE]``: no text, the generation's token counts and the pod's time on it."""
    payload: dict[str, Any] = {"error": None, "output": ""}
    if usage is not None:
        payload["usage"] = asdict(usage)
    if inference_seconds is not None:
        payload[INFERENCE_SECONDS_FIELD] = inference_seconds
    return sse_event(payload)


def error_event(message: str) -> str:
    return sse_event({"error": message, "output": None})


def raw_error(message: str) -> str:
    """The last line of a raw text stream that failed after its headers were sent."""
    return f"\n[error] {message}"


@dataclass(frozen=True)
class Delta:
    """Generated text."""

    text: str


@dataclass(frozen=True)
class Failure:
    """The generation failed; nothing follows."""

    message: str


@dataclass(frozen=True)
class Done:
    """The generation ended normally (``data: [DONE]``)."""


StreamEvent = Delta | Failure | TokenUsage | Done


class StreamParser:
    """Parses the runtime's SSE stream from bytes in chunks of any size into :data:`StreamEvent` s.

    Events are ``data: {"error": null, "output": "<delta>"}`` (optionally with ``"usage"``), then ``data: [DONE]``;
    or ``data: {"error": "...", "output": null}``. Nothing is parsed after :class:`Done` or :class:`Failure`.
    """

    def __init__(self, max_event_bytes: int = 1 << 20) -> None:
        self.max_event_bytes = max_event_bytes
        self.finished = False
        #: The pod's time on the request, once its last event has told it.
        self.inference_seconds: float | None = None
        self._buffer = bytearray()
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[StreamEvent]:
        if self.finished:
            return []
        self._buffer += chunk
        events: list[StreamEvent] = []
        while not self.finished:
            end = self._buffer.find(b"\n")
            if end < 0:
                break
            line = bytes(self._buffer[:end]).removesuffix(b"\r")
            del self._buffer[: end + 1]
            events.extend(self._line(line))
        if not self.finished and len(self._buffer) + sum(map(len, self._data)) > self.max_event_bytes:
            events.append(self._fail(f"the model sent an event larger than {self.max_event_bytes} bytes"))
        return events

    def close(self) -> list[StreamEvent]:
        """The end of the upstream body: a stream that did not finish is a failure."""
        if self.finished:
            return []
        return [self._fail("the model stream ended before the generation finished")]

    def _fail(self, message: str) -> Failure:
        self.finished = True
        self._buffer.clear()
        self._data.clear()
        return Failure(message)

    def _line(self, line: bytes) -> list[StreamEvent]:
        if not line:
            return self._dispatch()
        if line.startswith(b":"):
            return []
        name, _, value = line.partition(b":")
        if name == b"data":
            self._data.append(value.removeprefix(b" ").decode("utf-8", "replace"))
        return []

    def _dispatch(self) -> list[StreamEvent]:
        if not self._data:
            return []
        data = "\n".join(self._data)
        self._data.clear()
        if data == "[DONE]":
            self.finished = True
            return [Done()]
        try:
            payload = json.loads(data)
        except json.JSONDecodeError:
            return [self._fail(f"the model sent a malformed event: {data[:200]!r}")]
        if not isinstance(payload, dict):
            return [self._fail(f"the model sent a malformed event: {data[:200]!r}")]
        if payload.get("error") is not None:
            return [self._fail(str(payload["error"]))]
        events: list[StreamEvent] = []
        output = payload.get("output")
        if isinstance(output, str) and output:
            events.append(Delta(output))
        seconds = parse_seconds(payload.get(INFERENCE_SECONDS_FIELD))
        if seconds is not None:
            self.inference_seconds = seconds
        usage = TokenUsage.from_mapping(payload.get("usage"))
        if usage is not None:
            events.append(usage)
        return events
