"""A per-object queue of delayed work that coalesces bursts (pod events, deadline rechecks).

Requests for one key collapse into the earliest one pending, so a burst of pod
events for one ModelCluster costs one status derivation. Work that fails, whatever
the error, is logged and tried again with a growing delay: a key leaves the queue
only when its work succeeds and asks for nothing more.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable

from modelcluster.kube.client import KubeError

logger = logging.getLogger(__name__)

Key = tuple[str, str]  # (namespace, name)
Work = Callable[[str, str, bool], Awaitable[float | None]]

#: Seconds before the next try after 1, 2, ... consecutive failures (the last one repeats).
RETRY_DELAYS: tuple[float, ...] = (1, 2, 5, 10, 30, 60)
#: Up to this fraction is added to each retry delay, so keys that failed together do not retry in step.
RETRY_JITTER = 0.1


def retry_delay(failures: int, delays: tuple[float, ...] = RETRY_DELAYS, jitter: float = 0.0) -> float:
    """Seconds to wait after ``failures`` consecutive failures (``failures`` >= 1); ``jitter`` in [0, 1)."""
    base = delays[min(max(failures, 1), len(delays)) - 1]
    return base * (1 + jitter)


class WorkQueue:
    """Run ``work(namespace, name, apply)`` after a delay, once per key however often requested.

    ``work`` returns the seconds after which it wants to run again, or None.
    """

    def __init__(self, work: Work, retry_delays: tuple[float, ...] = RETRY_DELAYS) -> None:
        self._work = work
        self._retry_delays = retry_delays
        self._timers: dict[Key, tuple[float, bool, asyncio.TimerHandle]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._failures: dict[Key, int] = {}
        self._closed = False

    def request(self, key: Key, delay: float, *, apply: bool = False) -> None:
        """Run the work for ``key`` in ``delay`` seconds, unless it is due sooner anyway."""
        if self._closed:
            return
        loop = asyncio.get_running_loop()
        when = loop.time() + max(0.0, delay)
        pending = self._timers.get(key)
        if pending is not None:
            pending_when, pending_apply, handle = pending
            if pending_when <= when and (pending_apply or not apply):
                return
            handle.cancel()
            apply = apply or pending_apply
            when = min(when, pending_when)
        self._timers[key] = (when, apply, loop.call_at(when, self._start, key, apply))

    def _start(self, key: Key, apply: bool) -> None:
        self._timers.pop(key, None)
        task = asyncio.get_running_loop().create_task(self._run(key, apply))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, key: Key, apply: bool) -> None:
        try:
            again = await self._work(key[0], key[1], apply)
        except KubeError as error:
            self._retry(key, apply, str(error), trace=False)
            return
        except Exception as error:  # noqa: BLE001 - the queue is where work errors end: keep the key, try again
            self._retry(key, apply, f"{type(error).__name__}: {error}", trace=True)
            return
        self._failures.pop(key, None)
        if again is not None:
            self.request(key, again)

    def _retry(self, key: Key, apply: bool, reason: str, *, trace: bool) -> None:
        failures = self._failures.get(key, 0) + 1
        self._failures[key] = failures
        delay = retry_delay(failures, self._retry_delays, random.random() * RETRY_JITTER)
        message = "%s/%s: %s (failure %d); retrying in %.3gs"
        if trace:
            logger.exception(message, key[0], key[1], reason, failures, delay)
        else:
            logger.warning(message, key[0], key[1], reason, failures, delay)
        self.request(key, delay, apply=apply)

    def failures(self, key: Key) -> int:
        """Consecutive failures of ``key``'s work so far (0 after a success)."""
        return self._failures.get(key, 0)

    def pending(self) -> int:
        return len(self._timers) + len(self._tasks)

    async def close(self) -> None:
        """Cancel timers and running work; later requests are ignored."""
        self._closed = True
        for _, _, handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
