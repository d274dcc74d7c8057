"""The gateway's memory per request, on the real gateway process: bodies that amplify into objects are refused.

Before the structure limits, a 2.86 MiB ``[{},{},...]`` in ``params`` became about 69 MiB of objects and a second of
CPU on the event loop; a few at once could take a 1 GiB gateway down for every tenant. Now the structure is measured
on the raw bytes before anything is decoded: these bodies answer 413 naming the limit, the gateway's resident memory
grows by at most :data:`RSS_BOUND` while rounds of them arrive concurrently, and another tenant is answered
meanwhile within :data:`OTHER_TENANT_DEADLINE_S`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field

import httpx
import psutil
import pytest

from support import GatewayProcess, Tenant

pytestmark = pytest.mark.cluster

MODEL = "openai-community/gpt2"
MIB = 1024 * 1024
#: What the gateway's resident memory may grow by while the amplification rounds run (documented in docs/gateway.md).
RSS_BOUND = 64 * MIB
OTHER_TENANT_DEADLINE_S = 2.0
CONCURRENT = 8
ROUNDS = 3


def empty_objects(size: int) -> bytes:
    """``[{},{},...]`` of about ``size`` bytes."""
    count = size // 3
    return b"[" + b",".join([b"{}"] * count) + b"]"


def native(params: bytes) -> bytes:
    return b'{"text": "hi", "params": {"x": ' + params + b"}}"


AMPLIFIERS: dict[str, tuple[str, bytes, str]] = {
    # name: (route, body, the limit its answer names)
    "empty objects in params": ("native", native(empty_objects(int(2.86 * MIB))), "max_items"),
    "deeply nested arrays": ("native", native(b"[" * 400_000 + b"]" * 400_000), "max_depth"),
    "huge params object": (
        "native",
        b'{"text": "hi", "params": {' + b",".join(b'"k%d": 0' % i for i in range(300_000)) + b"}}",
        "max_params_keys",
    ),
    "empty objects as the body": ("native", empty_objects(int(2.86 * MIB)), "max_items"),
    "empty objects in chat messages": (
        "openai",
        b'{"model": "' + MODEL.encode() + b'", "messages": ' + empty_objects(int(2.86 * MIB)) + b"}",
        "max_items",
    ),
}


def post(gateway: GatewayProcess, tenant: Tenant, route: str, body: bytes) -> httpx.Response:
    path = "openai/v1/chat/completions" if route == "openai" else MODEL
    headers = {**tenant.headers, "Content-Type": "application/json"}
    return httpx.post(f"{gateway.url}/models/v2/{path}", content=body, headers=headers, timeout=60)


@dataclass
class Sampler:
    """The peak resident memory of a process, sampled in a thread."""

    process: psutil.Process
    peak: int = 0
    samples: int = 0
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            self.samples += 1
            time.sleep(0.005)


@contextmanager
def sampled(pid: int) -> Iterator[Sampler]:
    sampler = Sampler(psutil.Process(pid))
    thread = threading.Thread(target=sampler.run, daemon=True)
    thread.start()
    try:
        yield sampler
    finally:
        sampler.stop.set()
        thread.join()


@dataclass
class Watcher:
    """Another tenant's requests, one after the other, timed, while the attack runs."""

    call: Callable[[], httpx.Response]
    latencies: list[float] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.is_set():
            started = time.monotonic()
            answer = self.call()
            self.latencies.append(time.monotonic() - started)
            self.statuses.append(answer.status_code)
            time.sleep(0.02)


@pytest.mark.parametrize("name", list(AMPLIFIERS))
def test_each_amplifier_is_refused_naming_its_limit(gateway: GatewayProcess, tenant: Tenant, name: str) -> None:
    route, body, limit = AMPLIFIERS[name]
    answer = post(gateway, tenant, route, body)
    assert answer.status_code == 413, answer.text
    if route == "openai":
        error = answer.json()["error"]
        assert error["code"] == "request_too_large" and f"(limit {limit})" in error["message"], error
    else:
        assert answer.json()["output"] is None
        assert f"(limit {limit})" in answer.json()["error"], answer.text


def test_concurrent_amplifiers_stay_within_the_memory_bound_and_other_tenants_are_answered(
    gateway: GatewayProcess, tenant: Tenant, other_tenant: Tenant
) -> None:
    assert gateway.process is not None
    bodies = [AMPLIFIERS[name] for name in AMPLIFIERS]
    for route, body, _ in bodies:  # warm up: the connection buffers of a body this size exist once
        assert post(gateway, tenant, route, body).status_code == 413
    process = psutil.Process(gateway.process.pid)
    before = process.memory_info().rss

    def tasks_list() -> httpx.Response:
        return httpx.get(f"{gateway.url}/models/v2/list/tasks", headers=other_tenant.headers, timeout=30)

    watcher = Watcher(tasks_list)
    watching = threading.Thread(target=watcher.run, daemon=True)
    statuses: list[int] = []
    with sampled(gateway.process.pid) as sampler, ThreadPoolExecutor(CONCURRENT) as pool:
        watching.start()
        try:
            for round_ in range(ROUNDS):
                chosen = [bodies[(round_ + i) % len(bodies)] for i in range(CONCURRENT)]
                answers = list(pool.map(lambda item: post(gateway, tenant, item[0], item[1]), chosen))
                statuses.extend(answer.status_code for answer in answers)
        finally:
            watcher.stop.set()
            watching.join()
    grown = sampler.peak - before
    print(
        f"gateway RSS before {before / MIB:.1f} MiB, peak {sampler.peak / MIB:.1f} MiB (+{grown / MIB:.1f} MiB, "
        f"{sampler.samples} samples); other tenant: {len(watcher.latencies)} answers, "
        f"slowest {max(watcher.latencies, default=0):.3f}s"
    )
    assert statuses == [413] * (CONCURRENT * ROUNDS)
    assert grown <= RSS_BOUND, f"the gateway grew by {grown / MIB:.1f} MiB"
    assert watcher.statuses and set(watcher.statuses) == {200}
    assert max(watcher.latencies) <= OTHER_TENANT_DEADLINE_S, watcher.latencies
