"""The error body every JSON answer shares, and the errors that map onto it."""

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


def error_body(message: str) -> dict[str, Any]:
    """The JSON of a failed request."""
    return {"error": message, "output": None}


class ApiError(Exception):
    """An error the client should see, with its HTTP status and a short kind for metrics."""

    status_code = 500
    kind = "internal"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InputError(ApiError):
    """The request body does not fit the task (missing or wrong fields, bad media, unknown params)."""

    status_code = 422
    kind = "bad_input"


class PayloadTooLarge(ApiError):
    status_code = 413
    kind = "too_large"
