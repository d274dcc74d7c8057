"""The unified inference body of ``POST /models/v2/{modelId}`` (gateway) and ``POST /run`` (runtime).

``null`` for an optional field means the field is absent: clients such as the official SDK send
``"params": null``.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from modelcluster.api.errors import InputError
from modelcluster.api.json_limits import JsonLimits, check_json_limits

#: Token counts of a generation, on the runtime's non-streamed answers (the last SSE event carries
#: ``{"usage": {"prompt_tokens", "completion_tokens"}}`` instead).
PROMPT_TOKENS_HEADER = "X-Prompt-Tokens"
COMPLETION_TOKENS_HEADER = "X-Completion-Tokens"

INPUT_FIELDS = ("text", "messages", "url", "base64", "question", "context", "candidate_labels")


class ContentBlock(BaseModel):
    """One part of a multimodal message: text, or media given by url or base64."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["text", "image", "audio", "video"]
    text: str | None = None
    url: str | None = None
    base64: str | None = None


class Message(BaseModel):
    """A chat message: a role and either a string or content blocks."""

    model_config = ConfigDict(extra="forbid")

    role: str = Field(min_length=1)
    content: str | list[ContentBlock]


class RunRequest(BaseModel):
    """The unified body. ``input`` is what the official Python SDK sends (a string, a message list or an object)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    text: str | list[str] | None = Field(default=None, description="Text input, or a list of texts.")
    messages: list[Message] | None = Field(default=None, description="Chat messages.")
    url: str | None = Field(default=None, description="Media (image, audio, video) by URL.")
    base64: str | None = Field(default=None, description="Media (image, audio, video) as base64.")
    question: str | None = Field(default=None, description="The question of a question-answering task.")
    context: str | None = Field(default=None, description="The context of question-answering.")
    candidate_labels: list[str] | None = Field(default=None, description="Labels of zero-shot tasks.")
    params: dict[str, Any] = Field(default_factory=dict, description="Model parameters (e.g. max_new_tokens).")
    stream: bool = Field(default=False, description="Stream generated text as it is produced.")
    json_output: bool | None = Field(
        default=None, alias="json", description="`false` answers generated media as raw bytes instead of base64."
    )
    input: str | list[Message] | list[str] | dict[str, Any] | None = Field(
        default=None, description="What the official SDK sends: a string, a message list or an object of fields."
    )

    @field_validator("params", "stream", mode="before")
    @classmethod
    def _null_is_absent(cls, value: Any, info: Any) -> Any:
        if value is None:
            return {} if info.field_name == "params" else False
        return value


def summarize_validation_error(exc: ValidationError) -> str:
    """The first few problems of a validation error, each naming its field."""
    parts = []
    for error in exc.errors()[:5]:
        location = ".".join(str(item) for item in error["loc"]) or "body"
        parts.append(f"{location}: {error['msg']}")
    return "; ".join(parts)


def parse_run_request(raw: bytes, limits: JsonLimits | None = None) -> RunRequest:
    """Parse a request body once, answering every problem as an :class:`InputError` that names it.

    With ``limits``, the body's structure is measured on its bytes first (:func:`check_json_limits`), so a body
    past them is refused (413) before any object of it is made.
    """
    if limits is not None:
        check_json_limits(raw, limits)
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"the body is not valid JSON: {exc}") from exc
    return run_request_from(body)


def run_request_from(body: object) -> RunRequest:
    """Validate an already-decoded JSON body."""
    if not isinstance(body, dict):
        raise InputError("the body must be a JSON object")
    try:
        return RunRequest.model_validate(body)
    except ValidationError as exc:
        raise InputError(f"invalid body: {summarize_validation_error(exc)}") from exc
