"""Reconcile Tenants: each into its namespace, its ResourceQuota, its LimitRange and its status.

kopf's watch of Tenants (``handlers.py``) hands every event to :meth:`TenantController.event`; the
controller keeps the Tenants in memory and reconciles one at a time per Tenant through the shared
:class:`~modelcluster.operator.controller.queue.WorkQueue` (retries with a growing delay on failure). The
decisions are the pure builders of :mod:`modelcluster.operator.builders.tenant`; this module reads and
writes. Every Tenant is looked at again every :data:`RESYNC_SECONDS`, so its status follows what the
ResourceQuota counts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from modelcluster.api import field_managers
from modelcluster.api.labels import MANAGED_SELECTOR
from modelcluster.api.tenancy import is_tenant_namespace
from modelcluster.kube.client import Kube, KubeError
from modelcluster.kube.objects import Body, labels_of, metadata_of
from modelcluster.operator.builders.tenant import (
    QUOTA_PENDING,
    Refusal,
    claimed_by_another,
    in_use_refusal,
    limit_range_body,
    namespace_body,
    namespace_refusal,
    parse_tenant,
    quota_body,
    tenant_status,
    uncounted,
)
from modelcluster.operator.controller.queue import WorkQueue

logger = logging.getLogger(__name__)

FIELD_MANAGER = field_managers.OPERATOR
#: Seconds between two looks at a Tenant with nothing new: its status reports the quota's counts this fresh.
RESYNC_SECONDS = 15.0
#: Seconds between looks while the quota controller has not counted a new or changed ResourceQuota yet.
PENDING_SECONDS = 1.0
#: Seconds a quota may stay uncounted (the controller discovers a new CRD within 30 s) before it is nudged.
RECOUNT_SECONDS = 5.0
#: Pods and Deployments the operator made are the tenant's own, never "someone else's workloads".
FOREIGN_SELECTOR = ",".join(f"{key}!={value}" for key, value in MANAGED_SELECTOR.items())
_NO_NAMESPACE = ""


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class TenantController:
    """The Tenants seen, and the work of reconciling them."""

    kube: Kube
    #: Namespaces that are never a tenant's whatever their name: the operator's, the gateway's.
    reserved: Collection[str] = ()
    clock: Callable[[], datetime] = _now
    tenants: dict[str, Body] = field(default_factory=dict)
    queue: WorkQueue | None = None
    #: Since when each Tenant's quota has resources uncounted (see :func:`~.builders.tenant.uncounted`).
    _pending: dict[str, datetime] = field(default_factory=dict)

    def start(self) -> WorkQueue:
        """Create the queue (call inside the running loop)."""
        self.queue = WorkQueue(self.sync)
        return self.queue

    def event(self, kind: str | None, body: dict[str, Any]) -> None:
        """A Tenant event as kopf delivers it (``kind`` None while listing)."""
        name = str(metadata_of(body).get("name") or "")
        if not name:
            return
        if kind == "DELETED":
            self.tenants.pop(name, None)
            self._pending.pop(name, None)
            # Its ResourceQuota goes with it (owner reference); another Tenant waiting for the namespace may take it.
            for other in list(self.tenants):
                self._request(other)
            return
        self.tenants[name] = body
        self._request(name)

    def _request(self, name: str, delay: float = 0.0) -> None:
        if self.queue is not None:
            self.queue.request((_NO_NAMESPACE, name), delay)

    async def sync(self, _namespace: str, name: str, _apply: bool = True) -> float | None:
        """Reconcile the Tenant ``name``; seconds until it wants another look."""
        body = self.tenants.get(name)
        if body is None or metadata_of(body).get("deletionTimestamp"):
            return None
        try:
            status = await self._reconcile(body)
            await self.kube.apply_tenant_status(name, status, FIELD_MANAGER)
        except KubeError as error:
            if error.status == 404 and name not in self.tenants:
                return None  # deleted meanwhile
            raise
        if any(c.get("reason") == QUOTA_PENDING for c in status.get("conditions") or []):
            return PENDING_SECONDS
        return RESYNC_SECONDS

    async def _reconcile(self, body: Body) -> Body:
        now = self.clock()
        tenant = parse_tenant(body)
        if isinstance(tenant, Refusal):
            return self._refused(body, tenant, now)
        refusal = namespace_refusal(tenant, self.reserved) or claimed_by_another(
            tenant, body, (other for other in self.tenants.values() if other is not body)
        )
        if refusal is not None:
            return self._refused(body, refusal, now)
        namespace = tenant.namespace
        existing = await self.kube.read_namespace(namespace)
        if existing is not None and not is_tenant_namespace(namespace, labels_of(existing)):
            foreign = await self.kube.foreign_workloads(namespace, FOREIGN_SELECTOR)
            refused = in_use_refusal(namespace, foreign)
            if refused is not None:
                return self._refused(body, refused, now)
        if existing is None or not is_tenant_namespace(namespace, labels_of(existing)):
            logger.info("Tenant %s: %s namespace %s", tenant.name, "adopting" if existing else "creating", namespace)
        await self.kube.apply_namespace(namespace_body(tenant), FIELD_MANAGER)
        quota = await self.kube.apply_resource_quota(quota_body(tenant, body), FIELD_MANAGER)
        await self.kube.apply_limit_range(limit_range_body(tenant, body), FIELD_MANAGER)
        missing = uncounted(quota)
        if not missing:
            self._pending.pop(tenant.name, None)
        elif self._due_for_recount(tenant.name, now):
            logger.info("Tenant %s: having the quota controller count %s", tenant.name, ", ".join(missing))
            await self.kube.apply_resource_quota(quota_body(tenant, body, leave_out=missing), FIELD_MANAGER)
            quota = await self.kube.apply_resource_quota(quota_body(tenant, body), FIELD_MANAGER)
        return tenant_status(body, now, quota=quota).to_k8s()

    def _due_for_recount(self, name: str, now: datetime) -> bool:
        """Whether a quota uncounted since the first look is overdue (each :data:`RECOUNT_SECONDS`)."""
        since = self._pending.setdefault(name, now)
        if (now - since).total_seconds() < RECOUNT_SECONDS:
            return False
        self._pending[name] = now
        return True

    def _refused(self, body: Body, refusal: Refusal, now: datetime) -> Body:
        name = metadata_of(body).get("name")
        logger.warning("Tenant %s refused (%s): %s", name, refusal.reason, refusal.message)
        return tenant_status(body, now, refusal=refusal).to_k8s()
