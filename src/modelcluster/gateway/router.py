"""Choosing a pod for a request: at once when one is ready and has a free slot, else hold and wake.

A request that finds no ready pod waits in a bounded per-model buffer with a
deadline and is released the moment a pod turns ready (the EndpointSlice watch
wakes it), a starting pod answers the gateway's own health probe
(:mod:`modelcluster.gateway.first_answer`), or a slot frees up. The first such request of a stopped cluster writes
one wake annotation (single flight; at most one per ``wake_interval_s``), so the
operator reacts on the watch event instead of a timer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from datetime import UTC, datetime
from typing import Any

from modelcluster.api import ClusterPhase
from modelcluster.api.errors import ApiError, NotFound, RateLimited, Unavailable
from modelcluster.gateway.balancer import Balancer
from modelcluster.gateway.clusters import wake_patch
from modelcluster.gateway.demand import Demand
from modelcluster.gateway.endpoints import Endpoint, EndpointTable
from modelcluster.gateway.first_answer import FirstAnswer
from modelcluster.gateway.kube_answers import answered
from modelcluster.gateway.metrics import GatewayMetrics
from modelcluster.gateway.settings import GatewaySettings
from modelcluster.kube.client import Kube
from modelcluster.kube.index import ClusterTable
from modelcluster.kube.objects import ClusterKey

logger = logging.getLogger(__name__)


def needs_wake(cluster: dict[str, Any]) -> bool:
    """Whether the operator currently runs no replicas for ``cluster`` (so a request must wake it)."""
    status = cluster.get("status") or {}
    if status.get("status") == ClusterPhase.STOPPED:
        return True
    return status.get("targetReplicas") == 0


class Router:
    def __init__(
        self,
        settings: GatewaySettings,
        kube: Kube,
        clusters: ClusterTable,
        endpoints: EndpointTable,
        demand: Demand,
        metrics: GatewayMetrics,
    ) -> None:
        self.settings = settings
        self.kube = kube
        self.clusters = clusters
        self.endpoints = endpoints
        self.demand = demand
        self.metrics = metrics
        self.balancer = Balancer(settings.per_pod_limit)
        self._last_wake: dict[ClusterKey, float] = {}
        self._waiters: dict[ClusterKey, deque[asyncio.Future[bool]]] = {}
        self._wakes: set[asyncio.Task[None]] = set()
        self._held_bytes: dict[str, int] = {}
        self._held_total = 0
        # Starting pods of clusters with held requests, probed by the gateway: routed on their first answer.
        self.first_answer = FirstAnswer(
            settings, endpoints.starting, wanted=lambda key: self.demand.of(key).held > 0, on_change=self.changed
        )
        endpoints.on_starting = self.first_answer.poke

    def candidates(self, key: ClusterKey) -> tuple[Endpoint, ...]:
        """The pods of ``key`` that may take a request: ready in its slice, or starting and answered healthy."""
        ready = self.endpoints.ready(key)
        answered = self.first_answer.answered(key)
        return ready + answered if answered else ready

    def unreachable(self, key: ClusterKey, endpoint: Endpoint) -> None:
        """Connecting to ``endpoint`` failed: a pod routed on its first answer is dropped at once."""
        self.first_answer.drop(key, endpoint)

    async def stop(self) -> None:
        await self.first_answer.stop()

    async def acquire(self, key: ClusterKey, exclude: frozenset[str] = frozenset(), size: int = 0) -> Endpoint:
        """A pod for one request of ``key``, counted as in flight until :meth:`release`.

        ``size`` is what the request keeps while it is held (its body's bytes), bounded per tenant namespace and
        in total.
        """
        endpoint = self.balancer.pick(self.candidates(key), exclude)
        if endpoint is not None:
            return endpoint
        return await self._hold(key, exclude, size)

    @property
    def held_bytes(self) -> int:
        """Body bytes all held requests keep."""
        return self._held_total

    def held_bytes_of(self, namespace: str) -> int:
        """Body bytes the held requests of one tenant namespace keep."""
        return self._held_bytes.get(namespace, 0)

    def release(self, key: ClusterKey, endpoint: Endpoint) -> None:
        """Give a slot back; the longest-waiting held request of ``key`` (only that one) looks again."""
        self.balancer.release(endpoint)
        waiters = self._waiters.get(key)
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(True)
                break

    def forget(self, key: ClusterKey) -> None:
        """The cluster was deleted: drop its wake bookkeeping and its wake counter."""
        self._last_wake.pop(key, None)
        self.first_answer.forget(key)
        self.metrics.wakes.remove(*key)

    def changed(self, key: ClusterKey) -> None:
        """Pods or the cluster changed: every held request of ``key`` looks again."""
        waiters = self._waiters.pop(key, None)
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(True)

    async def _hold(self, key: ClusterKey, exclude: frozenset[str], size: int) -> Endpoint:
        model = self._model_id(key)
        if self.demand.of(key).held >= self.settings.hold_limit:
            logger.warning("%s/%s: %d requests held, answering 429", key[0], key[1], self.settings.hold_limit)
            raise RateLimited(f"too many requests are waiting for {model}; try again shortly", retry_after=1)
        namespace = key[0]
        if (
            self.held_bytes_of(namespace) + size > self.settings.hold_bytes_per_namespace
            or self._held_total + size > self.settings.hold_bytes_total
        ):
            logger.warning("%s/%s: %d bytes held in all, answering 429", key[0], key[1], self._held_total)
            raise RateLimited(f"too many bytes are waiting for {model}; try again shortly", retry_after=1)
        if size:
            self._held_bytes[namespace] = self.held_bytes_of(namespace) + size
            self._held_total += size
        self.demand.hold(key, +1)
        self.first_answer.watch(key)
        loop = asyncio.get_running_loop()
        first = True
        try:
            async with asyncio.timeout(self.settings.hold_timeout_s):
                while True:
                    self._check_cluster(key, model)
                    endpoint = self.balancer.pick(self.candidates(key), exclude)
                    if endpoint is not None:
                        return endpoint
                    waiter: asyncio.Future[bool] = loop.create_future()
                    queue = self._waiters.setdefault(key, deque())
                    # First in, first out; a request woken for a slot that another took keeps its place.
                    queue.append(waiter) if first else queue.appendleft(waiter)
                    first = False
                    try:
                        await waiter
                    finally:
                        if not waiter.done():
                            waiter.cancel()
        except TimeoutError:
            pass
        finally:
            self.demand.hold(key, -1)
            self._held_total -= size
            left = self._held_bytes.pop(namespace, 0) - size
            if left > 0:
                self._held_bytes[namespace] = left
            if not self._waiters.get(key, True):
                del self._waiters[key]
        raise Unavailable(
            f"{model} has no ready replica yet (waited {self.settings.hold_timeout_s:g}s); try again shortly",
            retry_after=10,
        )

    def _model_id(self, key: ClusterKey) -> str:
        cluster = self.clusters.get(key) or {}
        return str((cluster.get("spec") or {}).get("model") or key[1])

    def _check_cluster(self, key: ClusterKey, model: str) -> None:
        cluster = self.clusters.get(key)
        if cluster is None:
            raise NotFound(f"model cluster for {model} not found (it was deleted)")
        status = cluster.get("status") or {}
        if status.get("status") == ClusterPhase.FAILED:
            raise Unavailable(f"{model} cannot start: {status.get('message') or status.get('reason')}", retry_after=30)
        if not self.candidates(key) and needs_wake(cluster):
            self.wake(key)

    def wake(self, key: ClusterKey) -> None:
        """Ask the operator to bring ``key`` back (single flight, at most once per wake interval)."""
        now = time.monotonic()
        if now - self._last_wake.get(key, -1e9) < self.settings.wake_interval_s:
            return
        self._last_wake[key] = now
        task = asyncio.create_task(self._write_wake(key), name=f"wake {key[0]}/{key[1]}")
        self._wakes.add(task)
        task.add_done_callback(self._wakes.discard)

    async def _write_wake(self, key: ClusterKey) -> None:
        namespace, name = key
        try:
            updated = await answered(
                self.kube.patch_cluster(namespace, name, wake_patch(datetime.now(UTC))), f"cluster {name}"
            )
        except ApiError as error:
            self._last_wake.pop(key, None)
            logger.warning("waking %s/%s failed: %s", namespace, name, error.message)
            return
        if self.clusters.get(key) is None:
            return  # deleted while the wake was written: neither bring it back nor count it
        self.clusters.put(updated)
        self.metrics.wakes.labels(namespace, name).inc()
        logger.info("woke %s/%s", namespace, name)
