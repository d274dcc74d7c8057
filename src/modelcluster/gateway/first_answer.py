"""Route on first answer: the gateway probes the starting pods of the clusters it holds requests for.

A pod's Ready condition trails its first healthy answer by the kubelet's probe period and the round trips
of the pod status and the EndpointSlice. So while requests of a cluster are held, the gateway probes the
cluster's starting pods itself (an address in the cluster's trusted EndpointSlice, neither ready nor
terminating, or the warm standby the operator names in the cluster's status) and routes to a pod the moment its
``/health`` answers 200.

Each probe asks a loading pod to hold its answer up to ``start_probe_wait_s`` (``/health?wait=``,
:mod:`modelcluster.api.health`), so the answer comes the moment the model is loaded; a pod that answers at once
(refused, still starting its server, or a runtime that does not hold) is asked again every
``start_probe_interval_s``. A pod that appears while requests are held is probed at once.

Bounded: one probe in flight per pod, at most ``start_probe_pods`` pods per cluster, at most
``start_probe_concurrency`` probes in flight in all, each cut at its hold plus ``start_probe_timeout_s``. A pod
that answered stays probed until its slice lists it ready (then the slice routes it); one failed probe, a refused
connection, or the pod leaving its slice or turning terminating drops it at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable, Sequence

import aiohttp

from modelcluster.api.health import health_url
from modelcluster.gateway.endpoints import Endpoint
from modelcluster.gateway.settings import GatewaySettings
from modelcluster.kube.objects import ClusterKey

logger = logging.getLogger(__name__)


def healthy(status: int) -> bool:
    """Whether a runtime's ``/health`` answer means it can take requests (200 only: 503 is loading or draining)."""
    return status == 200


def probe_targets(starting: Sequence[Endpoint], limit: int) -> tuple[Endpoint, ...]:
    """The starting pods one round probes: the first ``limit`` (the table keeps them in a stable order)."""
    return tuple(starting[:limit])


def next_answered(
    answered: frozenset[Endpoint], starting: Sequence[Endpoint], results: dict[Endpoint, bool]
) -> frozenset[Endpoint]:
    """The pods that may take requests after some probes answered: those that answered healthy and still start.

    A pod that turned ready or left its slice is no longer in ``starting`` (the slice decides it now); a pod
    whose probe failed is dropped; a pod whose probe has not answered keeps its verdict.
    """
    still = set(starting)
    kept = {endpoint for endpoint in answered if endpoint in still and results.get(endpoint, True)}
    kept |= {endpoint for endpoint, ok in results.items() if ok and endpoint in still}
    return frozenset(kept)


def _forget_follower(
    followers: dict[Endpoint, asyncio.Task[None]], endpoint: Endpoint, done: asyncio.Task[None]
) -> None:
    if followers.get(endpoint) is done:
        del followers[endpoint]


class FirstAnswer:
    """Per cluster, the starting pods that answered their health probe; one probe loop per cluster.

    ``starting`` gives a cluster's starting pods (the endpoint table), ``wanted`` whether requests of it are
    held (then its loop runs), and ``on_change`` hears a cluster whose answered set changed (the router's
    held requests look again). The loop keeps one follower per probed pod, each with one probe in flight.
    """

    def __init__(
        self,
        settings: GatewaySettings,
        starting: Callable[[ClusterKey], Sequence[Endpoint]],
        wanted: Callable[[ClusterKey], bool],
        on_change: Callable[[ClusterKey], None],
    ) -> None:
        self.settings = settings
        self._starting = starting
        self._wanted = wanted
        self._on_change = on_change
        self._answered: dict[ClusterKey, frozenset[Endpoint]] = {}
        self._loops: dict[ClusterKey, asyncio.Task[None]] = {}
        self._pokes: dict[ClusterKey, asyncio.Event] = {}
        self._followers: dict[ClusterKey, dict[Endpoint, asyncio.Task[None]]] = {}
        self._slots: asyncio.Semaphore | None = None
        self._session: aiohttp.ClientSession | None = None

    def answered(self, key: ClusterKey) -> tuple[Endpoint, ...]:
        """The starting pods of ``key`` that answered healthy and may take requests now."""
        found = self._answered.get(key)
        if not found:
            return ()
        starting = self._starting(key)
        return tuple(endpoint for endpoint in starting if endpoint in found)

    def watch(self, key: ClusterKey) -> None:
        """Probe the starting pods of ``key`` while it holds requests (one loop per cluster)."""
        if self.settings.start_probe_pods == 0 or key in self._loops:
            return
        self._pokes[key] = asyncio.Event()
        task = asyncio.create_task(self._loop(key), name=f"probe starting pods of {key[0]}/{key[1]}")
        self._loops[key] = task
        task.add_done_callback(lambda done: self._loop_ended(key, done))

    def poke(self, key: ClusterKey) -> None:
        """The starting pods of ``key`` changed: a probing loop looks again at once (a new pod is probed now)."""
        poke = self._pokes.get(key)
        if poke is not None:
            poke.set()

    def drop(self, key: ClusterKey, endpoint: Endpoint) -> None:
        """``endpoint`` failed (a connection refused): it takes no more requests until it answers again."""
        found = self._answered.get(key)
        if found is None or endpoint not in found:
            return
        self._set(key, found - {endpoint})
        logger.info("%s/%s: pod %s failed after its first answer; dropped", key[0], key[1], endpoint.pod)

    def forget(self, key: ClusterKey) -> None:
        """The cluster was deleted: stop probing it."""
        self._answered.pop(key, None)
        loop = self._loops.pop(key, None)
        if loop is not None:
            loop.cancel()

    async def stop(self) -> None:
        loops = list(self._loops.values())
        for loop in loops:
            loop.cancel()
        await asyncio.gather(*loops, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _loop_ended(self, key: ClusterKey, task: asyncio.Task[None]) -> None:
        if self._loops.get(key) is task:
            del self._loops[key]
            self._pokes.pop(key, None)
        if not task.cancelled() and task.exception() is not None:
            logger.error("probing the starting pods of %s/%s stopped: %r", key[0], key[1], task.exception())

    def _set(self, key: ClusterKey, answered: frozenset[Endpoint]) -> None:
        before = self._answered.get(key, frozenset())
        if answered:
            self._answered[key] = answered
        else:
            self._answered.pop(key, None)
        if answered != before:
            self._on_change(key)

    def _targets(self, key: ClusterKey) -> tuple[Endpoint, ...]:
        return probe_targets(self._starting(key), self.settings.start_probe_pods)

    async def _loop(self, key: ClusterKey) -> None:
        """Keep a follower on each pod to probe, and drop the answered pods that stopped starting."""
        poke = self._pokes[key]
        followers = self._followers.setdefault(key, {})
        try:
            while self._wanted(key) or self._answered.get(key):
                poke.clear()
                for endpoint in self._targets(key):
                    if endpoint not in followers:
                        follower = asyncio.create_task(self._follow(key, endpoint), name=f"probe {endpoint.url}")
                        followers[endpoint] = follower
                        follower.add_done_callback(functools.partial(_forget_follower, followers, endpoint))
                self._set(key, next_answered(self._answered.get(key, frozenset()), self._starting(key), {}))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(poke.wait(), self.settings.start_probe_interval_s)
        finally:
            running = list(followers.values())
            for follower in running:
                follower.cancel()
            await asyncio.gather(*running, return_exceptions=True)
            if self._followers.get(key) is followers:
                del self._followers[key]

    async def _follow(self, key: ClusterKey, endpoint: Endpoint) -> None:
        """Probe one pod, one probe at a time, for as long as it is one to probe; each verdict counts at once."""
        interval = self.settings.start_probe_interval_s
        while endpoint in self._targets(key):
            began = time.monotonic()
            ok = await self._probe(endpoint)
            before = self._answered.get(key, frozenset())
            after = next_answered(before, self._starting(key), {endpoint: ok})
            if endpoint in after and endpoint not in before:
                logger.info("%s/%s: pod %s answered healthy; routing to it", key[0], key[1], endpoint.pod)
            self._set(key, after)
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - began)))

    async def _probe(self, endpoint: Endpoint) -> bool:
        wait = self.settings.start_probe_wait_s
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=wait + self.settings.start_probe_timeout_s),
                connector=aiohttp.TCPConnector(limit=0, limit_per_host=1),
            )
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.settings.start_probe_concurrency)
        async with self._slots:
            try:
                async with self._session.get(health_url(endpoint.url, wait)) as response:
                    return healthy(response.status)
            except (aiohttp.ClientError, TimeoutError):
                return False
