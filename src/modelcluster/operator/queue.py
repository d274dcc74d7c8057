"""A per-object queue of delayed work that coalesces bursts (pod events, deadline rechecks).

Requests for one key collapse into the earliest one pending, so a burst of pod
events for one ModelCluster costs one status derivation.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from modelcluster.operator.kube import KubeError

logger = logging.getLogger(__name__)

Key = tuple[str, str]  # (namespace, name)
Work = Callable[[str, str, bool], Awaitable[float | None]]


class WorkQueue:
    """Run ``work(namespace, name, apply)`` after a delay, once per key however often requested.

    ``work`` returns the seconds after which it wants to run again, or None.
    """

    def __init__(self, work: Work, retry_delays: tuple[float, ...] = (1, 2, 5, 10, 30, 60)) -> None:
        self._work = work
        self._retry_delays = retry_delays
        self._timers: dict[Key, tuple[float, bool, asyncio.TimerHandle]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._failures: dict[Key, int] = {}

    def request(self, key: Key, delay: float, *, apply: bool = False) -> None:
        """Run the work for ``key`` in ``delay`` seconds, unless it is due sooner anyway."""
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
            failures = self._failures.get(key, 0)
            self._failures[key] = failures + 1
            delay = self._retry_delays[min(failures, len(self._retry_delays) - 1)]
            logger.warning("%s/%s: %s; retrying in %ss", key[0], key[1], error, delay)
            self.request(key, delay, apply=apply)
            return
        self._failures.pop(key, None)
        if again is not None:
            self.request(key, again)

    def pending(self) -> int:
        return len(self._timers) + len(self._tasks)

    async def close(self) -> None:
        """Cancel timers and running work."""
        for _, _, handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
