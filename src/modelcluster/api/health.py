"""A runtime's health check, as the kubelet, the gateway and the operator read it.

``GET /health`` answers 200 once the runtime can take requests and 503 while it loads, drains or failed; it is
open (no credential). With ``?wait=<seconds>`` (at most :data:`MAX_HEALTH_WAIT_S`) a runtime that is still
loading holds the answer until its load ends or the wait runs out, so a caller learns of the first moment it
can answer without polling for it. The gateway probes starting pods this way (one such call per pod at a time).
"""

from __future__ import annotations

import math

from modelcluster.api.errors import InputError

HEALTH_PATH = "/health"
HEALTH_WAIT_PARAM = "wait"
#: The longest hold a ``/health`` call may ask for.
MAX_HEALTH_WAIT_S = 5.0


def health_wait(value: str | None) -> float:
    """The seconds a ``/health`` call asks to be held (0 without ``wait``); an :class:`InputError` when invalid."""
    if value is None or value == "":
        return 0.0
    try:
        seconds = float(value)
    except ValueError:
        raise InputError(f"'{HEALTH_WAIT_PARAM}' must be a number of seconds, got {value[:32]!r}") from None
    if not math.isfinite(seconds) or seconds < 0 or seconds > MAX_HEALTH_WAIT_S:
        raise InputError(f"'{HEALTH_WAIT_PARAM}' must be between 0 and {MAX_HEALTH_WAIT_S:g} seconds")
    return seconds


def health_url(base: str, wait_s: float = 0.0) -> str:
    """The health check of the runtime at ``base`` (``http://host:port``), held up to ``wait_s`` when positive."""
    if wait_s <= 0:
        return base + HEALTH_PATH
    return f"{base}{HEALTH_PATH}?{HEALTH_WAIT_PARAM}={min(wait_s, MAX_HEALTH_WAIT_S):g}"
