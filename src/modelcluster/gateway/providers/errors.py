"""Provider errors as the API's errors, chosen by the provider's error *type* where it has one, then its status.

The shared table (each provider module picks the kind from its own error body):

- ``auth``: a bad or missing provider key (Gemini answers it as 400 ``API_KEY_INVALID``) -> 401;
- ``rate_limit`` -> 429 with the provider's ``Retry-After``;
- ``overloaded`` (Anthropic's 529 ``overloaded_error``, any 503) -> 503 with ``Retry-After``;
- any other 4xx -> the same status with the provider's message;
- any other 5xx -> 502 naming the provider.

Every message is scrubbed of the key (:mod:`.scrub`) by the caller before it leaves the gateway.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Literal

from modelcluster.api.errors import ApiError, BadGateway, RateLimited, Unauthorized, Unavailable, UpstreamError

Kind = Literal["auth", "rate_limit", "overloaded", "other"]
#: Retry-After when an overloaded provider names none.
DEFAULT_RETRY_AFTER_S = 5
MAX_MESSAGE_CHARS = 1000


def decode_json(body: bytes) -> Any:
    """``body`` as JSON, or ``None`` when it is not (an HTML page from an edge proxy, say)."""
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None


def body_text(body: bytes) -> str:
    return body[:MAX_MESSAGE_CHARS].decode("utf-8", "replace").strip()


def retry_after_of(headers: Mapping[str, str]) -> int | None:
    """The provider's ``Retry-After`` (seconds or an HTTP date; ``retry-after-ms`` too) as whole seconds."""
    lowered = {key.lower(): value for key, value in headers.items()}
    millis = lowered.get("retry-after-ms")
    if millis is not None:
        try:
            return max(1, math.ceil(float(millis) / 1000))
        except ValueError:
            pass
    value = lowered.get("retry-after")
    if value is None:
        return None
    try:
        return max(1, math.ceil(float(value)))
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(1, math.ceil((moment - datetime.now(UTC)).total_seconds()))


def api_error(provider: str, kind: Kind, status: int, message: str, retry_after: int | None = None) -> ApiError:
    """The API's error for a provider error of ``kind`` answered with ``status``."""
    message = message.strip()[:MAX_MESSAGE_CHARS] or f"{provider} answered HTTP {status}"
    text = f"{provider}: {message}"
    if kind == "auth":
        return Unauthorized(text)
    if kind == "rate_limit":
        return RateLimited(text, retry_after=retry_after)
    if kind == "overloaded":
        return Unavailable(text, retry_after=retry_after or DEFAULT_RETRY_AFTER_S)
    if status == 401:
        return Unauthorized(text)
    if status == 429:
        return RateLimited(text, retry_after=retry_after)
    if status in (503, 529):
        return Unavailable(text, retry_after=retry_after or DEFAULT_RETRY_AFTER_S)
    if 400 <= status < 500:
        return UpstreamError(status, text)
    return BadGateway(f"{provider} failed (HTTP {status}): {message}")
