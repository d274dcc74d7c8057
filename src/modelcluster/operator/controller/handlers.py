"""kopf handlers, kept thin: kopf logs in and watches ModelClusters; the store takes it from there.

No change-detecting handlers (create/update/resume): those keep kopf's progress and last-handled
annotations on every object and replay every object on restart. Reconciles are level-based
instead (:mod:`.controller`). Handlers are registered on an explicit registry built at start, not
on kopf's global one at import time.
"""

from __future__ import annotations

import copy
from typing import Any

import kopf

from modelcluster.api import GROUP, PLURAL, VERSION
from modelcluster.api.tenant import TENANT_PLURAL
from modelcluster.operator.controller.store import Store
from modelcluster.operator.controller.tenants import TenantController
from modelcluster.operator.controller.workers import cluster_event


def build_registry(store: Store, tenants: TenantController | None = None) -> kopf.OperatorRegistry:
    """A kopf registry whose ModelCluster watch feeds ``store`` and whose Tenant watch feeds ``tenants``."""
    registry = kopf.OperatorRegistry()

    @kopf.on.login(id="login", registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)

    # A coroutine, so kopf calls it on the loop (plain functions go to a thread pool).
    @kopf.on.event(GROUP, VERSION, PLURAL, id="modelcluster-event", registry=registry)
    async def modelcluster_event(body: kopf.Body, type: str | None, **_: Any) -> None:
        cluster_event(store, type, copy.deepcopy(dict(body)))

    if tenants is not None:

        @kopf.on.event(GROUP, VERSION, TENANT_PLURAL, id="tenant-event", registry=registry)
        async def tenant_event(body: kopf.Body, type: str | None, **_: Any) -> None:
            tenants.event(type, copy.deepcopy(dict(body)))

    return registry
