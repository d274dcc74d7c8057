"""The gateway's table of Tenants, kept in memory by an informer (``modelcluster.kube.informer``).

:class:`TenantTable` is the informer's sink: every ``Tenant`` object parsed into
:class:`modelcluster.api.Tenant`, readable by the tenant's name (:meth:`TenantTable.get`) and by its
namespace (:meth:`TenantTable.for_namespace`, what a request's API key names). No API call per
request: the quota checks (and budgets) read this table. A Tenant the models refuse (the apiserver
validates the same rules, so only an object written before a schema change) is left out and logged.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from modelcluster.api.tenant import Tenant
from modelcluster.kube.objects import metadata_of

logger = logging.getLogger(__name__)


class TenantTable:
    """Every Tenant by name and by namespace; an informer sink (``reset`` and ``event``)."""

    def __init__(self) -> None:
        self._by_name: dict[str, Tenant] = {}
        self._by_namespace: dict[str, Tenant] = {}
        #: Each Tenant's age order (creation time, then name), as the operator ranks Tenants sharing a namespace.
        self._age: dict[str, tuple[str, str]] = {}

    def __len__(self) -> int:
        return len(self._by_name)

    def get(self, name: str) -> Tenant | None:
        """The Tenant named ``name``, if any."""
        return self._by_name.get(name)

    def for_namespace(self, namespace: str) -> Tenant | None:
        """The Tenant whose namespace is ``namespace``, if any (a namespace has at most one Tenant)."""
        return self._by_namespace.get(namespace)

    def all(self) -> list[Tenant]:
        """Every Tenant, by name."""
        return [self._by_name[name] for name in sorted(self._by_name)]

    def reset(self, items: list[dict[str, Any]]) -> None:
        self._by_name.clear()
        self._by_namespace.clear()
        self._age.clear()
        for item in items:
            self.event("ADDED", item)

    def event(self, kind: str, obj: Mapping[str, Any]) -> None:
        name = str(metadata_of(obj).get("name") or "")
        old = self._by_name.pop(name, None)
        self._age.pop(name, None)
        touched = {old.namespace} if old is not None else set()
        if kind != "DELETED" and name:
            try:
                tenant = Tenant.from_k8s(dict(obj))
            except ValidationError as error:
                logger.warning("ignoring Tenant %s: %s", name, error.errors()[0]["msg"])
            else:
                self._by_name[name] = tenant
                self._age[name] = (str(metadata_of(obj).get("creationTimestamp") or "~"), name)
                touched.add(tenant.namespace)
        for namespace in touched:
            self._elect(namespace)

    def _elect(self, namespace: str) -> None:
        """Two Tenants naming one namespace: the older holds it, as the operator reconciles the older only."""
        claims = [tenant for tenant in self._by_name.values() if tenant.namespace == namespace]
        if claims:
            self._by_namespace[namespace] = min(claims, key=lambda tenant: self._age[tenant.name])
        else:
            self._by_namespace.pop(namespace, None)
