"""``POST /responses`` (OpenAI's Responses API) for chat models, open and closed: the request, the answer, its events.

Request: ``model``, ``input`` (a string, or messages whose content is a string or ``input_text`` /
``output_text`` parts), ``instructions`` (a system message before the input), ``max_output_tokens``,
``temperature``, ``top_p``, ``stream``; ``store``, ``metadata`` and ``user`` are accepted and not used.
Answer: a ``response`` object whose ``output`` is one assistant ``message`` with one ``output_text`` part, and its
``usage`` (``input_tokens``, ``output_tokens``, ``total_tokens``). A stream is named events
(``event: <type>`` and ``data: {"type": <type>, "sequence_number": n, ...}``): ``response.created``,
``response.in_progress``, ``response.output_item.added``, ``response.content_part.added``,
``response.output_text.delta``..., ``response.output_text.done``, ``response.content_part.done``,
``response.output_item.done``, ``response.completed``; a failure after the first event is an ``error`` event
then ``response.failed``. There is no ``[DONE]``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field

from modelcluster.api.streaming import TokenUsage
from modelcluster.gateway.openai.protocol import JSONDict, _Body, parse_request

ROUTE = "responses"


class InputText(_Body):
    type: Literal["input_text", "output_text", "text"]
    text: str


def _content_as_parts(value: Any) -> Any:
    if isinstance(value, str):
        return [{"type": "input_text", "text": value}]
    return value


class InputMessage(_Body):
    type: Literal["message"] | None = None
    role: Literal["system", "developer", "user", "assistant"]
    content: Annotated[list[InputText], BeforeValidator(_content_as_parts)]

    @property
    def text(self) -> str:
        return "\n".join(part.text for part in self.content)


class ResponsesRequest(_Body):
    model: str = Field(min_length=1)
    input: str | list[InputMessage]
    instructions: str | None = None
    max_output_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    stream: bool = False
    store: bool | None = None  # accepted, nothing is stored
    metadata: dict[str, str] | None = None  # accepted, not used
    user: str | None = None  # accepted, not used

    def messages(self) -> list[tuple[str, str]]:
        """``(role, text)`` of every message, ``instructions`` first as ``system`` (``developer`` is ``system``)."""
        out: list[tuple[str, str]] = []
        if self.instructions:
            out.append(("system", self.instructions))
        if isinstance(self.input, str):
            out.append(("user", self.input))
        else:
            out.extend(("system" if m.role == "developer" else m.role, m.text) for m in self.input)
        return out


def parse_responses_request(raw: bytes) -> ResponsesRequest:
    return parse_request(ResponsesRequest, raw)  # type: ignore[type-var]


def usage_object(usage: TokenUsage | None) -> JSONDict:
    counts = usage or TokenUsage()
    return {
        "input_tokens": counts.prompt_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": counts.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": counts.total_tokens,
    }


def _part(text: str) -> JSONDict:
    return {"type": "output_text", "text": text, "annotations": []}


def _item(item_id: str, text: str | None) -> JSONDict:
    return {
        "type": "message",
        "id": item_id,
        "status": "in_progress" if text is None else "completed",
        "role": "assistant",
        "content": [] if text is None else [_part(text)],
    }


def response_object(
    request: ResponsesRequest,
    model: str,
    response_id: str,
    created: int,
    *,
    text: str | None,
    usage: TokenUsage | None,
    status: Literal["in_progress", "completed", "incomplete", "failed"] = "completed",
    error: JSONDict | None = None,
) -> JSONDict:
    """A ``response`` object; ``text`` ``None``: no output yet (an opening or a failed one)."""
    incomplete = {"reason": "max_output_tokens"} if status == "incomplete" else None
    return {
        "id": f"resp_{response_id}",
        "object": "response",
        "created_at": created,
        "status": status,
        "model": model,
        "output": [] if text is None else [_item(f"msg_{response_id}", text)],
        "usage": None if status == "in_progress" else usage_object(usage),
        "error": error,
        "incomplete_details": incomplete,
        "instructions": request.instructions,
        "max_output_tokens": request.max_output_tokens,
        "temperature": request.temperature,
        "top_p": request.top_p,
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "metadata": request.metadata or {},
        "text": {"format": {"type": "text"}},
    }


def completion_status(usage: TokenUsage | None, max_output_tokens: int | None) -> Literal["completed", "incomplete"]:
    """``incomplete`` when the output used up ``max_output_tokens``."""
    if usage is not None and max_output_tokens is not None and usage.completion_tokens >= max_output_tokens:
        return "incomplete"
    return "completed"


def named_event(kind: str, payload: Mapping[str, Any]) -> bytes:
    data = json.dumps({"type": kind, **payload}, separators=(",", ":"), ensure_ascii=False)
    return f"event: {kind}\ndata: {data}\n\n".encode()


class ResponsesStream:
    """The named events of one streamed response: :meth:`start`, :meth:`delta` s, then :meth:`done` or :meth:`fail`."""

    def __init__(self, request: ResponsesRequest, model: str, response_id: str, created: int) -> None:
        self.request = request
        self.model = model
        self.response_id = response_id
        self.item_id = f"msg_{response_id}"
        self.created = created
        self.sequence = 0
        self.text: list[str] = []
        self.finished = False

    def _event(self, kind: str, **payload: Any) -> bytes:
        out = named_event(kind, {"sequence_number": self.sequence, **payload})
        self.sequence += 1
        return out

    def _response(self, **kwargs: Any) -> JSONDict:
        return response_object(self.request, self.model, self.response_id, self.created, **kwargs)

    def _at(self) -> JSONDict:
        return {"item_id": self.item_id, "output_index": 0, "content_index": 0}

    def start(self) -> bytes:
        opening = self._response(text=None, usage=None, status="in_progress")
        return (
            self._event("response.created", response=opening)
            + self._event("response.in_progress", response=opening)
            + self._event("response.output_item.added", output_index=0, item=_item(self.item_id, None))
            + self._event("response.content_part.added", **self._at(), part=_part(""))
        )

    def delta(self, text: str) -> bytes:
        if self.finished or not text:
            return b""
        self.text.append(text)
        return self._event("response.output_text.delta", **self._at(), delta=text, logprobs=[])

    def done(self, usage: TokenUsage | None) -> bytes:
        if self.finished:
            return b""
        self.finished = True
        text = "".join(self.text)
        status = completion_status(usage, self.request.max_output_tokens)
        return (
            self._event("response.output_text.done", **self._at(), text=text, logprobs=[])
            + self._event("response.content_part.done", **self._at(), part=_part(text))
            + self._event("response.output_item.done", output_index=0, item=_item(self.item_id, text))
            + self._event(
                "response.completed" if status == "completed" else "response.incomplete",
                response=self._response(text=text, usage=usage, status=status),
            )
        )

    def fail(self, message: str, code: str, usage: TokenUsage | None = None) -> bytes:
        if self.finished:
            return b""
        self.finished = True
        error = {"code": code, "message": message}
        failed = self._response(text=None, usage=usage, status="failed", error=error)
        return self._event("error", code=code, message=message, param=None) + self._event(
            "response.failed", response=failed
        )
