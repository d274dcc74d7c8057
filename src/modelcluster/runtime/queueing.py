"""The bounded request queue: admission (429 at once when full) and FIFO hand-off to the model worker."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from modelcluster.api.errors import QueueFull
from modelcluster.api.streaming import TokenUsage


@dataclass(frozen=True)
class StreamEnd:
    """The last item of a stream job's chunk queue: the error that ended it, or the tokens of a finished generation."""

    error: BaseException | None = None
    usage: TokenUsage | None = None


class DeadlineExceeded(Exception):
    """A job that ran past its deadline: its request answers 504 whatever the model returned."""


@dataclass(eq=False)
class Job:
    """One request waiting for, or running on, the model."""

    item: Any
    params: dict[str, Any]
    key: str
    future: asyncio.Future[Any]
    enqueued_at: float
    stream: bool = False
    chunks: asyncio.Queue[str | StreamEnd] | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    deadline: float | None = None  # time.monotonic() after which work on it stops
    size: int = 1  # items it adds to a batch (the strings of a `text` list), what the batch limit counts

    @property
    def abandoned(self) -> bool:
        return self.cancel.is_set() or self.future.done()

    @property
    def expired(self) -> bool:
        return self.deadline is not None and time.monotonic() > self.deadline

    def should_stop(self) -> bool:
        """Whether work on the job should stop: its request gave up (client gone, timeout) or its deadline passed.

        Called from the inference thread; reads only thread-safe state.
        """
        return self.cancel.is_set() or self.expired


def select_batch(jobs: Sequence[Job], max_items: int, batchable: bool) -> list[int]:
    """Indices of the jobs to run together: the oldest job plus, when batchable, later jobs with the same params
    while their items fit in ``max_items`` (a job too large to fit waits for a later batch, which it opens when it
    is the oldest; the oldest job always runs, whatever its size)."""
    if not jobs:
        return []
    first = jobs[0]
    if first.stream or not batchable:
        return [0]
    chosen = [0]
    items = first.size
    for index in range(1, len(jobs)):
        if items >= max_items:
            break
        job = jobs[index]
        if not job.stream and job.key == first.key and items + job.size <= max_items:
            chosen.append(index)
            items += job.size
    return chosen


def batch_target(ready: int, preparing: int, last_batch_size: int, max_size: int) -> int:
    """How many items are worth waiting for before a batchable call: the recent load, capped by the batch size.

    ``ready`` and ``last_batch_size`` count items; ``preparing`` counts requests still parsing (one item each, at
    least). With one client (nothing preparing, last batch of one) this is what is ready, so nothing waits.
    """
    return max(1, min(max_size, max(ready + preparing, last_batch_size)))


class RequestQueue:
    """FIFO of jobs with a limit on requests waiting (admitted but not yet running)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._jobs: deque[Job] = deque()
        self._reserved = 0
        self._changed = asyncio.Event()

    @property
    def waiting(self) -> int:
        """Queue depth: admitted requests still preparing their input plus those queued for the model."""
        return self._reserved + len(self._jobs)

    @property
    def preparing(self) -> int:
        return self._reserved

    @property
    def ready(self) -> int:
        return len(self._jobs)

    @property
    def ready_items(self) -> int:
        """Items of the queued jobs (what a batch limit counts)."""
        return sum(job.size for job in self._jobs)

    def reserve(self) -> None:
        """Admit one request or raise ``QueueFull`` at once."""
        if self.waiting >= self.limit:
            raise QueueFull(f"the queue is full ({self.limit} requests waiting); retry later")
        self._reserved += 1
        self._notify()

    def unreserve(self) -> None:
        self._reserved -= 1
        self._notify()

    def put(self, job: Job) -> None:
        """Queue a job whose slot was reserved."""
        self._reserved -= 1
        self._jobs.append(job)
        self._notify()

    def take(self, max_items: int, batchable: bool) -> list[Job]:
        """Pop the next batch (at most ``max_items`` items, see :func:`select_batch`), dropping jobs whose request
        already gave up."""
        while self._jobs and self._jobs[0].abandoned:
            self._jobs.popleft()
        pending = list(self._jobs)
        indices = select_batch(pending, max_items, batchable)
        chosen = [pending[i] for i in indices]
        taken = set(indices)
        self._jobs = deque(job for i, job in enumerate(pending) if i not in taken)
        self._notify()
        return [job for job in chosen if not job.abandoned]

    async def wait_change(self, wait_s: float | None = None) -> None:
        self._changed.clear()
        try:
            await asyncio.wait_for(self._changed.wait(), wait_s)
        except TimeoutError:
            return

    async def wait_ready(self) -> None:
        while not self._jobs:
            await self.wait_change()

    def _notify(self) -> None:
        self._changed.set()
