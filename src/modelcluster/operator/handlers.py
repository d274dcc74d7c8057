"""kopf handlers, kept thin: each one hands the object to the reconciler.

Handlers are registered on an explicit registry built at start, not on kopf's
global one at import time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import kopf

from modelcluster.api import GROUP, PLURAL, VERSION
from modelcluster.operator.kube import ClusterApi, KubeError
from modelcluster.operator.labels import INSTANCE, MANAGED_SELECTOR
from modelcluster.operator.metrics import ReconcileMetrics
from modelcluster.operator.queue import Key, WorkQueue
from modelcluster.operator.reconcile import Reconciler
from modelcluster.operator.status import Derived

CONTROLLER = "modelcluster"
#: Pod and Deployment events for one cluster within this window cost one derivation.
EVENT_COALESCE_SECONDS = 0.5
_PERMANENT_STATUSES = (400, 422)

logger = logging.getLogger(__name__)


@dataclass
class Controller:
    """The reconciler with its metrics and its queue of delayed work."""

    api: ClusterApi
    reconciler: Reconciler
    metrics: ReconcileMetrics
    queue: WorkQueue | None = None
    _locks: dict[Key, asyncio.Lock] = field(default_factory=dict)

    async def converge(self, body: Mapping[str, Any], *, apply: bool) -> Derived:
        """Reconcile ``body`` (one at a time per object)."""
        metadata = body.get("metadata") or {}
        lock = self._locks.setdefault((str(metadata.get("namespace")), str(metadata.get("name"))), asyncio.Lock())
        async with lock:
            return await self._converge(body, apply=apply)

    async def _converge(self, body: Mapping[str, Any], *, apply: bool) -> Derived:
        with self.metrics.reconcile(CONTROLLER) as outcome:
            derived = await self.reconciler.reconcile(body, apply=apply)
            if derived.recheck_after is not None:
                outcome.requeue()
        return derived

    async def converge_by_key(self, namespace: str, name: str, apply: bool) -> float | None:
        """Queue work: fetch the ModelCluster and converge it, if it still exists."""
        body = await self.api.get_cluster(namespace, name)
        if body is None or (body.get("metadata") or {}).get("deletionTimestamp"):
            return None
        return recheck_delay(await self.converge(body, apply=apply))

    def request(self, key: Key, *, apply: bool, delay: float = EVENT_COALESCE_SECONDS) -> None:
        if self.queue is not None:
            self.queue.request(key, delay, apply=apply)


def recheck_delay(derived: Derived) -> float | None:
    """Seconds until the status needs another look because time alone changes it (a deadline)."""
    return None if derived.recheck_after is None else derived.recheck_after + 1.0


def _owner_key(body: Mapping[str, Any]) -> Key | None:
    metadata = body.get("metadata") or {}
    name = (metadata.get("labels") or {}).get(INSTANCE)
    namespace = metadata.get("namespace")
    return (str(namespace), str(name)) if name and namespace else None


def build_registry(controller: Controller) -> kopf.OperatorRegistry:
    """A kopf registry with the operator's handlers."""
    registry = kopf.OperatorRegistry()

    @kopf.on.login(id="login", registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)

    @kopf.on.resume(GROUP, VERSION, PLURAL, id="reconcile", registry=registry)
    @kopf.on.create(GROUP, VERSION, PLURAL, id="reconcile", registry=registry)
    @kopf.on.update(GROUP, VERSION, PLURAL, id="reconcile", registry=registry)
    async def reconcile_cluster(body: kopf.Body, namespace: str | None, name: str, **_: Any) -> None:
        try:
            derived = await controller.converge(body, apply=True)
        except KubeError as error:
            if error.status in _PERMANENT_STATUSES:
                raise kopf.PermanentError(f"the apiserver rejected a child object: {error}") from error
            raise kopf.TemporaryError(str(error), delay=5) from error
        spec_problem = next((p for p in derived.problems if p.kind == "Spec"), None)
        if spec_problem is not None:
            kopf.warn(body, reason=spec_problem.reason, message=spec_problem.message)
        again = recheck_delay(derived)
        if again is not None and namespace:
            controller.request((namespace, name), apply=False, delay=again)

    @kopf.on.event("apps", "v1", "deployments", id="deployment-event", labels=MANAGED_SELECTOR, registry=registry)
    async def deployment_event(body: kopf.Body, type: str | None, **_: Any) -> None:
        key = _owner_key(body)
        if key is not None:
            # A deleted Deployment is applied again; any change re-derives the status.
            controller.request(key, apply=type == "DELETED")

    @kopf.on.event("v1", "services", id="service-event", labels=MANAGED_SELECTOR, registry=registry)
    async def service_event(body: kopf.Body, type: str | None, **_: Any) -> None:
        key = _owner_key(body)
        if key is not None and type == "DELETED":
            controller.request(key, apply=True)

    @kopf.on.event("v1", "pods", id="pod-event", labels=MANAGED_SELECTOR, registry=registry)
    async def pod_event(body: kopf.Body, **_: Any) -> None:
        key = _owner_key(body)
        if key is not None:
            controller.request(key, apply=False)

    # Event handlers are coroutines: kopf runs plain functions in a thread pool, away from the loop.
    return registry
