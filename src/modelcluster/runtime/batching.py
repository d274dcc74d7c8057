"""The model worker: takes jobs from the queue, forms micro-batches and runs them off the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from modelcluster.api.streaming import TokenUsage
from modelcluster.runtime.queueing import DeadlineExceeded, Job, RequestQueue, StreamEnd, batch_target
from modelcluster.runtime.tasks.base import Stopped

if TYPE_CHECKING:
    from modelcluster.runtime.metrics import RuntimeMetrics
    from modelcluster.runtime.tasks.base import Handler

logger = logging.getLogger(__name__)


def params_key(params: dict[str, Any]) -> str:
    """Requests batch together only when their params are equal."""
    return json.dumps(params, sort_keys=True, default=str)


def split_for_retry(jobs: list[Job]) -> list[list[Job]]:
    """The parts a failed model call is retried in: two halves, so one bad item among n costs about 2 log2(n)
    calls, and every request that fails alone gets its own error while the others get their outputs."""
    middle = (len(jobs) + 1) // 2
    return [jobs[:middle], jobs[middle:]]


class Scheduler:
    """One worker coroutine feeding one inference thread; the queue in front of it is bounded."""

    def __init__(
        self,
        handler: Handler,
        metrics: RuntimeMetrics,
        *,
        max_queue: int,
        max_batch_size: int,
        max_batch_wait_s: float,
    ) -> None:
        self.handler = handler
        self.metrics = metrics
        self.queue = RequestQueue(max_queue)
        self.max_batch_size = max_batch_size if handler.batchable else 1
        self.max_batch_wait_s = max_batch_wait_s
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")
        self._task: asyncio.Task[None] | None = None
        self._last_batch_size = 1
        self._background: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._work(), name="model-worker")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._executor.shutdown(wait=False, cancel_futures=True)

    def update_gauges(self) -> None:
        self.metrics.queue_depth.set(self.queue.waiting)

    def new_job(self, item: Any, params: dict[str, Any], *, stream: bool, deadline: float | None) -> Job:
        loop = asyncio.get_running_loop()
        return Job(
            size=self.handler.item_count(item),
            item=item,
            params=params,
            key=params_key(params),
            future=loop.create_future(),
            enqueued_at=time.monotonic(),
            stream=stream,
            chunks=asyncio.Queue() if stream else None,
            deadline=deadline,
        )

    def submit(self, job: Job) -> None:
        """Queue a job whose slot was reserved; concurrent engines start it at once and keep the slot until done."""
        if self.handler.concurrent:
            task = asyncio.get_running_loop().create_task(self._run_concurrent(job))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        else:
            self.queue.put(job)
        self.update_gauges()

    async def _run_concurrent(self, job: Job) -> None:
        assert job.chunks is not None
        self.metrics.in_flight.inc()
        started = time.monotonic()
        should_stop = job.should_stop
        end = StreamEnd()
        try:
            async for delta in self.handler.astream(job.item, job.params, should_stop):
                if isinstance(delta, TokenUsage):
                    end = StreamEnd(usage=delta)
                    continue
                job.chunks.put_nowait(delta)
                if should_stop():
                    self.metrics.streams_cancelled.inc()
                    break
        except Exception as exc:  # noqa: BLE001 - written into the stream by the request that owns it
            end = StreamEnd(exc)
        finally:
            if job.expired:
                end = StreamEnd(DeadlineExceeded())
            self.queue.unreserve()
            self.metrics.in_flight.dec()
            self.metrics.stage_seconds.labels(stage="inference").observe(time.monotonic() - started)
            self.update_gauges()
        job.chunks.put_nowait(end)
        _resolve(job.future)

    async def _collect(self) -> list[Job]:
        await self.queue.wait_ready()
        if self.handler.batchable:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.max_batch_wait_s
            while True:
                ready = self.queue.ready_items
                target = batch_target(ready, self.queue.preparing, self._last_batch_size, self.max_batch_size)
                remaining = deadline - loop.time()
                if ready >= target or remaining <= 0:
                    break
                await self.queue.wait_change(remaining)
        return self.queue.take(self.max_batch_size, self.handler.batchable)

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = await self._collect()
            self.update_gauges()
            if not jobs:
                continue
            started = time.monotonic()
            for job in jobs:
                self.metrics.stage_seconds.labels(stage="queue_wait").observe(started - job.enqueued_at)
            self._last_batch_size = sum(job.size for job in jobs)
            self.metrics.batch_size.observe(self._last_batch_size)
            self.metrics.in_flight.inc(len(jobs))
            try:
                if jobs[0].stream:
                    await loop.run_in_executor(self._executor, self._run_stream, jobs[0], loop)
                else:
                    await self._run_batch(jobs, loop)
            finally:
                self.metrics.in_flight.dec(len(jobs))
                self.metrics.stage_seconds.labels(stage="inference").observe(time.monotonic() - started)

    async def _run_batch(self, jobs: list[Job], loop: asyncio.AbstractEventLoop) -> None:
        """One model call for the batch; it is asked to stop once every job in it should stop (gave up or
        passed its deadline), and a job past its deadline answers 504 even when the model returned.

        A failing call is retried in halves (:func:`split_for_retry`) down to single requests, so an item that
        breaks the call fails only its own request; an output that is an exception fails only its job.
        """
        items = [job.item for job in jobs]

        def should_stop() -> bool:
            return all(job.should_stop() for job in jobs)

        try:
            outputs = await loop.run_in_executor(
                self._executor, self.handler.run_until, items, jobs[0].params, should_stop
            )
            if len(outputs) != len(jobs):
                raise RuntimeError(f"the model returned {len(outputs)} outputs for {len(jobs)} inputs")
        except Exception as exc:  # noqa: BLE001 - retried per part, then handed to the request it belongs to
            live = [job for job in jobs if not job.should_stop()]
            if len(jobs) > 1 and live and not isinstance(exc, Stopped):
                for job in jobs:
                    if job.should_stop():
                        _fail(job, exc)
                self.metrics.batch_retries.inc()
                for part in split_for_retry(live):
                    if part:
                        await self._run_batch(part, loop)
                return
            for job in jobs:
                _fail(job, exc)
            return
        for job, output in zip(jobs, outputs, strict=True):
            if job.expired:
                _fail(job, DeadlineExceeded())
            elif isinstance(output, Exception):
                _fail(job, output)
            elif not job.future.done():
                job.future.set_result(output)

    def _run_stream(self, job: Job, loop: asyncio.AbstractEventLoop) -> None:
        """Runs in the inference thread: generate, pushing each text delta and then the end (error or usage)."""
        assert job.chunks is not None
        chunks = job.chunks
        should_stop = job.should_stop
        end = StreamEnd()
        try:
            for delta in self.handler.stream(job.item, job.params, should_stop):
                if should_stop():
                    break
                if isinstance(delta, TokenUsage):
                    end = StreamEnd(usage=delta)
                    continue
                loop.call_soon_threadsafe(chunks.put_nowait, delta)
                self.metrics.stream_chunks.inc()
        except Exception as exc:  # noqa: BLE001 - written into the stream by the request that owns it
            end = StreamEnd(exc)
        if should_stop():
            self.metrics.streams_cancelled.inc()
        if job.expired:  # a stream cut by its deadline ends with the timeout, not as if it had finished
            end = StreamEnd(DeadlineExceeded())
        loop.call_soon_threadsafe(chunks.put_nowait, end)
        loop.call_soon_threadsafe(_resolve, job.future)


def _fail(job: Job, exc: BaseException) -> None:
    """Answer a job with an error; one past its deadline (stopped early, or too late) with ``DeadlineExceeded``."""
    if not job.future.done():
        job.future.set_exception(DeadlineExceeded() if job.expired else exc)


def _resolve(future: asyncio.Future[Any]) -> None:
    if not future.done():
        future.set_result(None)
