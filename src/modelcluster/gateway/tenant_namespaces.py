"""The namespaces that are tenants now: a key serves only while its tenant's namespace carries the tenant label.

A key Secret names its tenant; the namespace is what makes it one (:mod:`.tenancy`). The gateway follows the
namespaces labelled ``modelcluster.dev/tenant`` with an informer, and the auth middleware refuses (401, as any
key that is no good) a key whose namespace is missing or no longer labelled with its own name, so removing the
label (or the namespace) stops every key of that tenant at once, without touching its Secrets.
"""

from __future__ import annotations

from modelcluster.gateway.tenancy import is_tenant_namespace
from modelcluster.kube.objects import Body, metadata_of


class TenantNamespaces:
    """Names of the namespaces labelled as tenants of their own name (an informer's sink)."""

    def __init__(self) -> None:
        self._names: set[str] = set()
        self._refused: set[str] = set()  # key ids refused since the last change, logged once each

    def first_refusal(self, key_id: str) -> bool:
        """Whether a key refused for its namespace is refused for the first time since the table last changed."""
        if key_id in self._refused:
            return False
        self._refused.add(key_id)
        return True

    def __contains__(self, name: object) -> bool:
        return name in self._names

    def reset(self, items: list[Body]) -> None:
        self._names = set()
        for item in items:
            self.event("ADDED", item)

    def event(self, kind: str, obj: Body) -> None:
        self._refused.clear()
        metadata = metadata_of(obj)
        name = str(metadata.get("name") or "")
        if kind != "DELETED" and is_tenant_namespace(name, metadata.get("labels")):
            self._names.add(name)
        else:
            self._names.discard(name)
