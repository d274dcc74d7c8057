"""The error body every JSON answer of the HTTP API shares."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ErrorBody(BaseModel):
    """``{"error": null | string, "output": ...}`` — the shape of every JSON response."""

    model_config = ConfigDict(extra="forbid")

    error: str | None = Field(default=None, description="Null on success, a human-readable message otherwise.")
    output: Any = Field(default=None, description="The result; null when the request failed.")

    @classmethod
    def failure(cls, message: str) -> ErrorBody:
        return cls(error=message, output=None)
