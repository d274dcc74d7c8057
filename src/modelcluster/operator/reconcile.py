"""Converge one ModelCluster: apply its children, then derive and write its status."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from modelcluster.api import ModelClusterStatus
from modelcluster.catalog import Catalog
from modelcluster.operator.config import FIELD_MANAGER
from modelcluster.operator.deployment import build_deployment
from modelcluster.operator.kube import ClusterApi
from modelcluster.operator.labels import selector_labels
from modelcluster.operator.plan import Plan, plan
from modelcluster.operator.replicas import REPLICAS_FIELD_MANAGER, build_replicas_apply
from modelcluster.operator.service import build_service
from modelcluster.operator.status import Derived, Observation, derive_status
from modelcluster.operator.workload import PodOptions

#: Status fields other writers own (the gateway and the autoscaler): never applied here.
#: Written by the autoscaler under its own field manager.
FOREIGN_STATUS_FIELDS = frozenset({"queueDepth", "lastRequestTime", "lastScaleTime"})

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reconciler:
    """Everything a reconciliation needs besides the object itself."""

    api: ClusterApi
    catalog: Catalog
    pods: PodOptions
    unschedulable_deadline: timedelta

    def plan(self, body: Mapping[str, Any], now: datetime) -> Plan:
        return plan(body, self.catalog, self.pods, now)

    async def apply_children(self, planned: Plan) -> dict[str, Any] | None:
        """Server-side apply the Service and the Deployment, then ``spec.replicas`` on its own.

        Returns the Deployment as the last apply answered it (None when nothing was applied).
        """
        workload = planned.workload
        if workload is None or planned.replicas is None:
            return None
        existing = await self.api.get_deployment(workload.namespace, workload.name)
        deployment = build_deployment(workload, self.pods)
        if existing is None:
            # Created with the right count, so a cluster created at zero never starts a pod.
            deployment["spec"]["replicas"] = planned.replicas
        await self.api.apply(build_service(workload, self.pods), FIELD_MANAGER)
        applied = await self.api.apply(deployment, FIELD_MANAGER)
        if existing is None:
            # The autoscaler's field manager takes the count over at once; from then on it alone writes
            # it, and later applies of the body (which never carries it) leave it alone.
            applied = await self.api.apply(
                build_replicas_apply(workload.name, workload.namespace, planned.replicas), REPLICAS_FIELD_MANAGER
            )
        return applied

    async def observe(self, planned: Plan, now: datetime, deployment: dict[str, Any] | None = None) -> Derived:
        """Read the children (the Deployment unless just applied) and derive the status."""
        pods: list[dict[str, Any]] = []
        if planned.workload is not None:
            namespace, name = planned.owner.namespace, planned.owner.name
            if deployment is None:
                deployment = await self.api.get_deployment(namespace, name)
            selector = ",".join(f"{k}={v}" for k, v in selector_labels(name).items())
            pods = await self.api.list_pods(namespace, selector)
        observation = Observation(
            generation=planned.generation,
            now=now,
            task=planned.workload.placement.task if planned.workload else None,
            endpoint=planned.endpoint,
            selector=planned.selector,
            target_replicas=_deployment_replicas(deployment, planned.replicas),
            deployment=deployment,
            pods=pods,
            spec_problem=planned.problem,
            previous=planned.previous,
        )
        return derive_status(observation, self.unschedulable_deadline)

    async def write_status(self, planned: Plan, derived: Derived) -> bool:
        """Apply the derived status when it differs from the stored one; whether it was written."""
        new = owned_status(derived.status)
        old = owned_status(planned.previous) if planned.previous is not None else None
        if new == old:
            return False
        await self.api.apply_cluster_status(planned.owner.namespace, planned.owner.name, new, FIELD_MANAGER)
        return True

    async def reconcile(self, body: Mapping[str, Any], *, apply: bool = True) -> Derived:
        """Converge ``body``: children first (unless ``apply`` is false), then status."""
        now = datetime.now(UTC)
        planned = self.plan(body, now)
        applied = await self.apply_children(planned) if apply else None
        derived = await self.observe(planned, now, applied)
        await self.write_status(planned, derived)
        return derived


def _deployment_replicas(deployment: Mapping[str, Any] | None, planned: int | None) -> int | None:
    """The replica count in force: the Deployment's (the autoscaler's), or the planned one before it exists."""
    if deployment is not None:
        replicas = (deployment.get("spec") or {}).get("replicas")
        if isinstance(replicas, int):
            return replicas
    return planned


def owned_status(status: ModelClusterStatus) -> dict[str, Any]:
    """The status fields the operator writes, in their JSON form."""
    return {key: value for key, value in status.to_k8s().items() if key not in FOREIGN_STATUS_FIELDS}
