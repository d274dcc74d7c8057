"""Errors that map to an HTTP status and the error body ``{"error": <message>, "output": null}``."""

from __future__ import annotations


class RuntimeHTTPError(Exception):
    """An error the client should see, with its HTTP status."""

    status_code = 500
    kind = "internal"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InputError(RuntimeHTTPError):
    """The request body does not fit the task (missing or wrong fields, bad media, unknown params)."""

    status_code = 422
    kind = "bad_input"


class PayloadTooLarge(RuntimeHTTPError):
    status_code = 413
    kind = "too_large"


class QueueFull(RuntimeHTTPError):
    status_code = 429
    kind = "queue_full"


class NotReady(RuntimeHTTPError):
    status_code = 503
    kind = "not_ready"


class RequestTimeout(RuntimeHTTPError):
    status_code = 504
    kind = "timeout"


class InferenceError(RuntimeHTTPError):
    """The model raised while running a request that passed validation."""

    status_code = 500
    kind = "inference"
