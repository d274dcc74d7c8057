"""Errors of the gateway: each maps to an HTTP status and the error body ``{"error", "output": null}``."""

from __future__ import annotations

from modelcluster.api.errors import ApiError, InputError, PayloadTooLarge

__all__ = [
    "ApiError",
    "BadGateway",
    "Conflict",
    "GatewayTimeout",
    "InputError",
    "NotFound",
    "PayloadTooLarge",
    "RateLimited",
    "Unauthorized",
    "Unavailable",
]


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
        super().__init__(message)
        self.retry_after = retry_after


class Unavailable(ApiError):
    """No pod could answer in time (503), with a hint of when to try again."""

    status_code = 503
    kind = "unavailable"

    def __init__(self, message: str, retry_after: int = 5) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class BadGateway(ApiError):
    status_code = 502
    kind = "bad_gateway"


class GatewayTimeout(ApiError):
    status_code = 504
    kind = "upstream_timeout"
