"""Polling with a deadline instead of sleeping: one helper for threads and one for event loops."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def _timed_out(timeout: float, what: str, probe: object, last: object) -> AssertionError:
    return AssertionError(f"timed out after {timeout:.0f}s waiting for {what or probe!r}; last value: {last!r}")


def eventually(probe: Callable[[], T | None], timeout: float = 60.0, interval: float = 0.2, what: str = "") -> T:
    """Call ``probe`` until it returns something truthy; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise _timed_out(timeout, what, probe, last)


async def eventually_async(
    probe: Callable[[], T | None], within: float = 5.0, interval: float = 0.005, what: str = ""
) -> T:
    """:func:`eventually` inside an event loop: ``probe`` reads state that the loop's other tasks change.

    (``within``, not ``timeout``: the deadline is the helper's own, no cancellation scope.)
    """
    deadline = time.monotonic() + within
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        await asyncio.sleep(interval)
    raise _timed_out(within, what, probe, last)
