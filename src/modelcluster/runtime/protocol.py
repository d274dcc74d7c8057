"""The wire format of ``POST /run`` and of every answer: ``{"error": ..., "output": ...}``."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class ContentBlock(BaseModel):
    """One part of a multimodal message: text, or media given by url or base64."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["text", "image", "audio", "video"]
    text: str | None = None
    url: str | None = None
    base64: str | None = None


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: str = Field(min_length=1)
    content: str | list[ContentBlock]


class RunRequest(BaseModel):
    """The unified body. ``input`` is what the official Python SDK sends (a string, a message list or an object)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    text: str | list[str] | None = None
    messages: list[Message] | None = None
    url: str | None = None
    base64: str | None = None
    question: str | None = None
    context: str | None = None
    candidate_labels: list[str] | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    stream: bool = False
    json_output: bool | None = Field(default=None, alias="json")
    input: str | list[Message] | list[str] | dict[str, Any] | None = None


class Answer(BaseModel):
    """Every JSON answer, success or failure."""

    error: str | None = None
    output: Any = None


def error_body(message: str) -> dict[str, Any]:
    return {"error": message, "output": None}
