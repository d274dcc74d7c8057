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
        for item in items:
            self.event("ADDED", item)

    def event(self, kind: str, obj: Mapping[str, Any]) -> None:
        name = str(metadata_of(obj).get("name") or "")
        self._forget(name)
        if kind == "DELETED" or not name:
            return
        try:
            tenant = Tenant.from_k8s(dict(obj))
        except ValidationError as error:
            logger.warning("ignoring Tenant %s: %s", name, error.errors()[0]["msg"])
            return
        self._by_name[name] = tenant
        # Two Tenants naming one namespace: the operator reconciles the older; the table keeps the first seen.
        self._by_namespace.setdefault(tenant.namespace, tenant)

    def _forget(self, name: str) -> None:
        old = self._by_name.pop(name, None)
        if old is not None and self._by_namespace.get(old.namespace) is old:
            del self._by_namespace[old.namespace]
            for other in self._by_name.values():  # another Tenant naming that namespace takes it over
                if other.namespace == old.namespace:
                    self._by_namespace[old.namespace] = other
                    break
