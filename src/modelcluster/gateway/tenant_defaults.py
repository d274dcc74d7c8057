"""A tenant's defaults for the clusters the gateway creates for it: pure.

A ``PUT`` without ``capacity`` (or ``timeout``), and the cluster a first request creates, get the tenant's
``spec.defaults.capacity`` (``timeout``) when its Tenant sets them; otherwise the ModelCluster CRD's defaults
apply. A body that states a capacity keeps it whole: the tenant's default capacity is never merged field by
field into one (the result could break the capacity's own rules).
"""

from __future__ import annotations

from typing import Any

from modelcluster.api.tenant import Tenant
from modelcluster.gateway.clusters import CapacityPatch, ClusterBody


def with_tenant_defaults(body: ClusterBody, tenant: Tenant | None) -> ClusterBody:
    """``body`` with the fields it leaves out taken from ``tenant``'s defaults."""
    if tenant is None or tenant.spec.defaults is None:
        return body
    defaults = tenant.spec.defaults
    update: dict[str, Any] = {}
    if body.capacity is None and defaults.capacity is not None:
        capacity = defaults.capacity
        update["capacity"] = CapacityPatch(min=capacity.min, desired=capacity.desired, max=capacity.max)
    if body.timeout is None and defaults.timeout is not None:
        update["timeout"] = defaults.timeout
    return body.model_copy(update=update) if update else body
