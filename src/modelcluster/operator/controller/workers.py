"""The reconcile loop: every change the store sees wakes the reconcile of the cluster it belongs to.

Requests for one cluster coalesce in the work queue, and one reconcile per cluster runs at a
time. A reconcile reads the cluster and its children from the store, so a restarted operator
that finds everything converged reads and writes nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from modelcluster.kube.client import KubeError
from modelcluster.kube.objects import Body, ClusterKey, metadata_of
from modelcluster.operator.builders.standby_status import lending_changed
from modelcluster.operator.builders.status import Derived
from modelcluster.operator.controller.locks import KeyedLocks
from modelcluster.operator.controller.queue import Key, WorkQueue
from modelcluster.operator.controller.reconcile import Memory, Reconciler, Seen
from modelcluster.operator.controller.store import Store
from modelcluster.operator.metrics import ReconcileMetrics

CONTROLLER = "modelcluster"
#: A change of the ModelCluster itself is acted on at once.
CLUSTER_DELAY_SECONDS = 0.0
#: Pod and Deployment changes of one cluster within this window cost one reconcile.
CHILD_COALESCE_SECONDS = 0.5
#: Reconciles in flight at once: as many as the API client's connection pool serves, so a burst of a
#: thousand creates does not hold a thousand half-built bodies in memory while waiting for a connection.
MAX_CONCURRENT_RECONCILES = 64

logger = logging.getLogger(__name__)


def recheck_delay(derived: Derived) -> float | None:
    """Seconds until the status needs another look because time alone changes it (a deadline)."""
    return None if derived.recheck_after is None else derived.recheck_after + 1.0


@dataclass
class Controller:
    """Reconciles clusters as the store sees them change."""

    store: Store
    reconciler: Reconciler
    metrics: ReconcileMetrics
    memory: Memory = field(default_factory=Memory)
    queue: WorkQueue | None = None
    _locks: KeyedLocks[Key] = field(default_factory=KeyedLocks)
    _slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(MAX_CONCURRENT_RECONCILES))

    def start(self) -> WorkQueue:
        """Create the queue and subscribe to the store (call inside the running loop)."""
        self.queue = WorkQueue(self.sync)
        self.store.clusters.subscribe(self._cluster_changed)
        self.store.deployments.subscribe(self._child_changed("Deployment"))
        self.store.services.subscribe(self._child_changed("Service"))
        self.store.pods.subscribe(self._pod_changed)
        return self.queue

    def request(self, key: Key, delay: float) -> None:
        if self.queue is not None:
            self.queue.request(key, delay)

    def _cluster_changed(self, key: ClusterKey, new: Body | None, old: Body | None) -> None:
        if new is None:
            self.memory.forget_cluster(*key)
            return
        self.request(key, CLUSTER_DELAY_SECONDS)

    def _child_changed(self, kind: str) -> Callable[[ClusterKey, Body | None, Body | None], None]:
        def changed(key: ClusterKey, new: Body | None, old: Body | None) -> None:
            if new is None and old is not None:
                # Gone: applied again (if its cluster still wants it) rather than trusted from memory.
                self.memory.forget((key[0], str(metadata_of(old).get("name")), kind))
                self.request(key, CLUSTER_DELAY_SECONDS)
                return
            self.request(key, CHILD_COALESCE_SECONDS)

        return changed

    def _pod_changed(self, key: ClusterKey, new: Body | None, old: Body | None) -> None:
        # A standby lent to the cluster (or leaving it) is named in its status at once: a wake waits for it.
        self.request(key, CLUSTER_DELAY_SECONDS if lending_changed(new, old) else CHILD_COALESCE_SECONDS)

    async def sync(self, namespace: str, name: str, _apply: bool = True) -> float | None:
        """Reconcile one cluster from the store; seconds until it wants another look, or None."""
        await self.store.synced.wait()
        key = (namespace, name)
        async with self._locks.hold(key), self._slots:
            body = self.store.clusters.one(key)
            if body is None or metadata_of(body).get("deletionTimestamp"):
                return None  # its children go with it (owner references)
            seen = Seen(
                deployment=self.store.deployments.named(key, name),
                service=self.store.services.named(key, name),
                pods=tuple(self.store.pods.all(key)),
            )
            try:
                with self.metrics.reconcile(CONTROLLER) as outcome:
                    derived = await self.reconciler.reconcile(body, seen, self.memory)
                    if derived.recheck_after is not None:
                        outcome.requeue()
            except KubeError as error:
                if not error.gone:
                    raise
                # Deleted meanwhile (or its namespace is): its deletion event clears what is remembered.
                logger.debug("%s/%s: gone while reconciling: %s", namespace, name, error)
                return None
            return recheck_delay(derived)


def cluster_event(store: Store, kind: str | None, body: dict[str, Any]) -> None:
    """A ModelCluster event as kopf delivers it (``kind`` None while listing) into the store."""
    store.clusters.event(kind or "ADDED", body)
