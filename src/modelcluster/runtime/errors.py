"""Errors that map to an HTTP status and the error body ``{"error": <message>, "output": null}``."""

from __future__ import annotations

from modelcluster.api.errors import ApiError, InputError, PayloadTooLarge

#: The runtime's errors are the contract's: one hierarchy, one error body.
RuntimeHTTPError = ApiError

__all__ = [
    "InferenceError",
    "InputError",
    "InternalError",
    "NotReady",
    "PayloadTooLarge",
    "QueueFull",
    "RequestTimeout",
    "RuntimeHTTPError",
]


class QueueFull(ApiError):
    status_code = 429
    kind = "queue_full"


class NotReady(ApiError):
    status_code = 503
    kind = "not_ready"


class RequestTimeout(ApiError):
    status_code = 504
    kind = "timeout"


class InferenceError(ApiError):
    """The model raised while running a request that passed validation."""

    status_code = 500
    kind = "inference"


class InternalError(ApiError):
    """Anything else that failed while answering a request: the caller sees only the request id."""

    status_code = 500
    kind = "internal"
