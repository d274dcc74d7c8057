"""The one error vocabulary: the error body every JSON answer shares, and the errors that map onto it.

The gateway and the runtime raise these; each route family renders them in its own shape
(``{"error", "output"}`` natively, ``{"error": {"message", "type", "param", "code"}}`` on the
OpenAI routes, at :attr:`ApiError.openai_status`).
"""

from __future__ import annotations

from typing import Any, ClassVar

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
    """An error the client should see, with its HTTP status and a short kind for metrics and logs.

    ``param`` names the offending field where one is known; ``retry_after`` (seconds) becomes the
    ``Retry-After`` header of 429 and 503 answers.
    """

    status_code: ClassVar[int] = 500
    kind: ClassVar[str] = "internal"

    def __init__(self, message: str, *, param: str | None = None, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.retry_after = retry_after

    @property
    def status(self) -> int:
        """The status of this error (an :class:`UpstreamError` carries the one it passes on)."""
        return self.status_code

    @property
    def openai_status(self) -> int:
        """The status on the OpenAI routes, where every bad request is a 400."""
        return 400 if self.status == 422 else self.status


class InputError(ApiError):
    """The request body does not fit the task (missing or wrong fields, bad media, unknown params)."""

    status_code = 422
    kind = "bad_input"


class BadRequest(InputError):
    """A body the OpenAI routes cannot take (not JSON, a field of the wrong type); 400 on every route."""

    status_code = 400


class PayloadTooLarge(ApiError):
    status_code = 413
    kind = "too_large"


class ClientTimeout(ApiError):
    """The client did not send its request in time (408)."""

    status_code = 408
    kind = "client_timeout"


class Unauthorized(ApiError):
    status_code = 401
    kind = "unauthorized"

    def __init__(self, message: str = "Unauthorized") -> None:
        super().__init__(message)


class NotFound(ApiError):
    status_code = 404
    kind = "not_found"


class Conflict(ApiError):
    status_code = 409
    kind = "conflict"


class RateLimited(ApiError):
    status_code = 429
    kind = "rate_limited"

    def __init__(self, message: str = "Rate limit exceeded", retry_after: int | None = None) -> None:
        super().__init__(message, retry_after=retry_after)


class PaymentRequired(ApiError):
    """The tenant's budget for the current period is spent (402); its message names the budget and its reset."""

    status_code = 402
    kind = "budget"


class QueueFull(ApiError):
    """The runtime's queue is full: too many requests wait for the model."""

    status_code = 429
    kind = "queue_full"


class Unavailable(ApiError):
    """No pod could answer in time (503), with a hint of when to try again."""

    status_code = 503
    kind = "unavailable"

    def __init__(self, message: str, retry_after: int = 5) -> None:
        super().__init__(message, retry_after=retry_after)


class NotReady(ApiError):
    """The runtime is loading its model or draining."""

    status_code = 503
    kind = "not_ready"


class BadGateway(ApiError):
    status_code = 502
    kind = "bad_gateway"


class StatusError(ApiError):
    """An error whose status is known only when it happens (an HTTP layer's own 404 or 405, say)."""

    kind = "http"

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self._status = status

    @property
    def status(self) -> int:
        return self._status


class UpstreamError(StatusError):
    """An error answer of a model pod passed on to the client with the pod's own status."""

    kind = "upstream"


class GatewayTimeout(ApiError):
    status_code = 504
    kind = "upstream_timeout"


class RequestTimeout(ApiError):
    """The runtime did not finish the request within its deadline."""

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


class QuotaExceeded(ApiError):
    """A cluster write that would take the tenant past one of its quotas (ModelClusters, replicas, GPUs)."""

    status_code = 403
    kind = "quota_exceeded"
