"""The autoscaler's side of the demand feed: one long-poll subscription per gateway and per ready runtime pod.

Each :class:`Subscription` mirrors one publisher's feed (:mod:`modelcluster.api.demand`): a full
answer replaces the mirror, a difference updates it. :class:`Subscriptions` runs a task per
publisher (started and stopped as gateways and ready pods come and go), keeps a lost
publisher's last state for ``stale_s`` seconds (then drops it) while it retries, and calls
``on_change`` with the clusters whose demand rose, so the autoscaler decides for them at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import aiohttp
from pydantic import ValidationError

from modelcluster.api.demand import POD_KEY, ClusterDemand, DemandChanges
from modelcluster.kube.objects import ClusterKey

logger = logging.getLogger(__name__)

#: Seconds an answer may wait for a change (the publisher answers at once when something changed).
WAIT_S = 10.0
#: Retry delays after a failed poll: doubled from the first to the last.
RETRY_S = (0.2, 2.0)


@dataclass
class Subscription:
    """One publisher's feed as mirrored here. A pod's single entry is filed under the pod's cluster."""

    url: str
    cluster: ClusterKey | None = None  # a runtime pod's cluster; None for a gateway (its entries name theirs)
    pod: str = ""  # a runtime pod's name
    headers: dict[str, str] = field(default_factory=dict)  # a pod's: the cluster's pod credential
    epoch: str = ""
    version: int = 0
    entries: dict[ClusterKey, ClusterDemand] = field(default_factory=dict)
    seen: float | None = None  # time.time() of the last answer
    failures: int = 0

    def apply(self, changes: DemandChanges) -> set[ClusterKey]:
        """Take an answer; the clusters whose demand (outstanding or held) rose."""
        if changes.full:
            old, self.entries = self.entries, {}
        else:
            old = {}
        rose: set[ClusterKey] = set()
        for entry in changes.clusters:
            key = self._key(entry)
            before = old.get(key) or self.entries.get(key)
            self.entries[key] = entry
            grew = before is None or entry.outstanding > before.outstanding or entry.held > before.held
            if grew and (entry.outstanding or entry.held):
                rose.add(key)
        for namespace, name in changes.removed:
            self.entries.pop(self.cluster or (namespace, name), None)
        self.epoch, self.version = changes.epoch, changes.version
        return rose

    def _key(self, entry: ClusterDemand) -> ClusterKey:
        if self.cluster is not None and (entry.namespace, entry.name) == POD_KEY:
            return self.cluster
        return (entry.namespace, entry.name)

    def fresh(self, now: float, stale_s: float) -> bool:
        return self.seen is not None and now - self.seen < stale_s


class Subscriptions:
    """Long-poll tasks over a set of publishers, kept in step with :meth:`sync`."""

    def __init__(
        self,
        interval_s: float,
        stale_s: float,
        on_change: Callable[[set[ClusterKey]], None],
        timeout_s: float = 2.0,
        on_poll: Callable[[str], None] | None = None,
    ) -> None:
        self.interval_s = interval_s  # the least time between two answers taken from one publisher
        self.stale_s = stale_s
        self.timeout_s = timeout_s  # to connect and to read an answer, beyond its wait
        self.on_change = on_change
        self.on_poll = on_poll  # hears each poll's result: "ok", "refused" (401/403) or "failed"
        self.items: dict[str, Subscription] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        return self._session

    def sync(self, wanted: Iterable[Subscription], now: float) -> None:
        """Follow the publishers in ``wanted`` (by URL), not others. A gateway no longer listed keeps its last
        state until stale; a pod no longer ready is dropped at once."""
        by_url = {sub.url: sub for sub in wanted}
        for url, sub in by_url.items():
            if url not in self._tasks:
                self.items[url] = sub
                self._tasks[url] = asyncio.create_task(self._follow(sub), name=f"demand {url}")
        for url in list(self._tasks):
            if url not in by_url:
                self._tasks.pop(url).cancel()
                if self.items[url].cluster is not None:
                    del self.items[url]
        gone = [url for url, sub in self.items.items() if url not in self._tasks and not sub.fresh(now, self.stale_s)]
        for url in gone:
            del self.items[url]

    def live(self, now: float) -> list[Subscription]:
        """The subscriptions whose state counts now: answered within ``stale_s``."""
        return [sub for sub in self.items.values() if sub.fresh(now, self.stale_s)]

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _follow(self, sub: Subscription) -> None:
        while True:
            try:
                changes = await self._poll(sub)
            except (aiohttp.ClientError, TimeoutError, ValidationError) as error:
                refused = isinstance(error, aiohttp.ClientResponseError) and error.status in (401, 403)
                self._heard("refused" if refused else "failed")
                sub.failures += 1
                if sub.failures == 1:
                    logger.info("demand feed %s lost (%s); retrying, its last state kept for %gs", sub.url, error,
                                self.stale_s)  # fmt: skip
                await asyncio.sleep(min(RETRY_S[1], RETRY_S[0] * 2 ** (sub.failures - 1)))
                continue
            self._heard("ok")
            if sub.failures:
                logger.info("demand feed %s back (%s)", sub.url, "full resync" if changes.full else "changes")
            sub.failures = 0
            sub.seen = time.time()
            rose = sub.apply(changes)
            if rose:
                self.on_change(rose)
            await asyncio.sleep(self.interval_s)

    def _heard(self, result: str) -> None:
        if self.on_poll is not None:
            self.on_poll(result)

    async def _poll(self, sub: Subscription) -> DemandChanges:
        params = {"epoch": sub.epoch, "since": str(sub.version), "wait": str(WAIT_S)}
        timeout = aiohttp.ClientTimeout(total=WAIT_S + self.timeout_s, sock_connect=self.timeout_s)
        async with self.session().get(sub.url, params=params, headers=sub.headers, timeout=timeout) as response:
            if response.status != 200:
                raise aiohttp.ClientResponseError(
                    response.request_info, (), status=response.status, message=f"answered {response.status}"
                )
            return DemandChanges.model_validate_json(await response.read())
