"""The work queue keeps every key until its work succeeds; the lock map keeps only keys in use."""

from __future__ import annotations

import asyncio
import itertools
import logging

import pytest

from modelcluster.kube.client import KubeError
from modelcluster.operator.controller.locks import KeyedLocks
from modelcluster.operator.controller.queue import RETRY_DELAYS, WorkQueue, retry_delay

from support import eventually_async

KEY = ("ns", "a")


def test_retry_delay_grows_then_stays_at_the_last_step() -> None:
    assert [retry_delay(n) for n in range(1, 9)] == [1, 2, 5, 10, 30, 60, 60, 60]
    assert retry_delay(1, (0.5, 4.0), jitter=0.1) == pytest.approx(0.55)
    assert retry_delay(0) == RETRY_DELAYS[0]


@pytest.mark.parametrize(
    "error",
    [RuntimeError("boom"), KeyError("spec"), ValueError("odd object"), KubeError(500, "internal")],
    ids=["RuntimeError", "KeyError", "ValueError", "KubeError"],
)
async def test_any_error_is_logged_and_retried_with_the_same_request(
    error: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[bool] = []

    async def work(namespace: str, name: str, apply: bool) -> float | None:
        calls.append(apply)
        if len(calls) == 1:
            raise error
        return None

    queue = WorkQueue(work, retry_delays=(0.01,))
    with caplog.at_level(logging.WARNING, logger="modelcluster.operator.controller.queue"):
        queue.request(KEY, 0, apply=True)
        await eventually_async(lambda: len(calls) == 2 and queue.pending() == 0)
    assert calls == [True, True]
    assert queue.failures(KEY) == 0
    assert any("ns/a" in record.getMessage() and "retrying" in record.getMessage() for record in caplog.records)
    await queue.close()


async def test_a_failing_key_is_never_dropped_and_backs_off() -> None:
    loop = asyncio.get_running_loop()
    times: list[float] = []

    async def work(namespace: str, name: str, apply: bool) -> float | None:
        times.append(loop.time())
        if len(times) <= 5:
            raise RuntimeError("still broken")
        return None

    delays = (0.01, 0.02, 0.04, 0.08)
    queue = WorkQueue(work, retry_delays=delays)
    queue.request(KEY, 0)
    await eventually_async(lambda: len(times) == 6 and queue.pending() == 0)
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    for gap, delay in zip(gaps, (0.01, 0.02, 0.04, 0.08, 0.08), strict=True):
        assert gap >= delay * 0.99
    assert queue.failures(KEY) == 0
    await queue.close()


async def test_a_deadline_recheck_survives_a_failure() -> None:
    calls: list[str] = []

    async def work(namespace: str, name: str, apply: bool) -> float | None:
        calls.append(name)
        if len(calls) == 1:
            return 0.01  # a deadline to look at again
        if len(calls) == 2:
            raise TypeError("unexpected body")
        return None

    queue = WorkQueue(work, retry_delays=(0.01,))
    queue.request(KEY, 0)
    await eventually_async(lambda: len(calls) == 3 and queue.pending() == 0)
    assert calls == ["a", "a", "a"]
    await queue.close()


async def test_a_request_during_backoff_runs_no_later_than_asked() -> None:
    calls: list[bool] = []

    async def work(namespace: str, name: str, apply: bool) -> float | None:
        calls.append(apply)
        if len(calls) == 1:
            raise RuntimeError("boom")
        return None

    queue = WorkQueue(work, retry_delays=(60,))
    queue.request(KEY, 0)
    await eventually_async(lambda: len(calls) == 1 and queue.failures(KEY) == 1)
    queue.request(KEY, 0.01)  # an event: sooner than the minute of back-off, and the apply is kept
    await eventually_async(lambda: len(calls) == 2, within=2)
    await queue.close()


async def test_cancelled_work_is_not_retried_and_close_ends_everything() -> None:
    started = asyncio.Event()

    async def work(namespace: str, name: str, apply: bool) -> float | None:
        started.set()
        await asyncio.Event().wait()
        return None

    queue = WorkQueue(work)
    queue.request(KEY, 0)
    queue.request(("ns", "later"), 30)
    await asyncio.wait_for(started.wait(), 5)
    await queue.close()
    assert queue.pending() == 0
    queue.request(KEY, 0)  # after close: ignored
    assert queue.pending() == 0


async def test_keyed_locks_serialize_one_key_and_forget_it_when_unused() -> None:
    locks: KeyedLocks[str] = KeyedLocks()
    inside: list[str] = []
    most = 0

    async def use(key: str) -> None:
        nonlocal most
        async with locks.hold(key):
            inside.append(key)
            most = max(most, inside.count(key))
            await asyncio.sleep(0.01)
            inside.remove(key)

    await asyncio.gather(*(use(key) for key in ["a"] * 5 + ["b"] * 5))
    assert most == 1
    assert len(locks) == 0


async def test_keyed_locks_let_different_keys_run_together() -> None:
    locks: KeyedLocks[str] = KeyedLocks()
    both = asyncio.Barrier(2)

    async def use(key: str) -> None:
        async with locks.hold(key):
            await asyncio.wait_for(both.wait(), 2)

    await asyncio.gather(use("a"), use("b"))
    assert len(locks) == 0


async def test_keyed_locks_forget_keys_after_errors_and_cancelled_waiters() -> None:
    locks: KeyedLocks[str] = KeyedLocks()
    with pytest.raises(RuntimeError):
        async with locks.hold("a"):
            raise RuntimeError("boom")
    assert len(locks) == 0

    release = asyncio.Event()

    async def holder() -> None:
        async with locks.hold("b"):
            await release.wait()

    async def waiter() -> None:
        async with locks.hold("b"):
            pass

    holding = asyncio.create_task(holder())
    await asyncio.sleep(0)
    waiting = asyncio.create_task(waiter())
    await asyncio.sleep(0)
    assert len(locks) == 1
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
    release.set()
    await holding
    assert len(locks) == 0


async def test_keyed_locks_stay_bounded_over_many_keys() -> None:
    locks: KeyedLocks[tuple[str, str]] = KeyedLocks()
    for index in range(10_000):
        async with locks.hold(("ns", f"cluster-{index}")):
            pass
    assert len(locks) == 0
