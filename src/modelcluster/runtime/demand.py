"""The runtime pod's own demand (queue + in flight, last request) published on its ``/demand`` feed.

Traffic that bypasses the gateway shows only here. The counts are sampled from the runtime's
metrics a few times a second; the feed answers a subscriber only when they changed
(:mod:`modelcluster.api.demand`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from modelcluster.api.demand import POD_KEY, DemandFeed
from modelcluster.api.metric_names import RUNTIME_IN_FLIGHT, RUNTIME_LAST, RUNTIME_QUEUE
from modelcluster.runtime.batching import Scheduler
from modelcluster.runtime.metrics import RuntimeMetrics

SAMPLE_INTERVAL_S = 0.2


def sample(feed: DemandFeed, metrics: RuntimeMetrics, scheduler: Scheduler | None) -> None:
    """Publish the runtime's demand now (a no-op on the feed when nothing changed)."""
    if scheduler is not None:
        scheduler.update_gauges()
    registry = metrics.registry
    busy = sum(max(0, int(registry.get_sample_value(name) or 0)) for name in (RUNTIME_QUEUE, RUNTIME_IN_FLIGHT))
    feed.set(POD_KEY, busy, 0, float(registry.get_sample_value(RUNTIME_LAST) or 0.0))


async def publish(feed: DemandFeed, metrics: RuntimeMetrics, scheduler: Callable[[], Scheduler | None]) -> None:
    """Sample until cancelled."""
    while True:
        sample(feed, metrics, scheduler())
        await asyncio.sleep(SAMPLE_INTERVAL_S)
