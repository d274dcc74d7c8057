"""In-memory tables of watched objects, grouped by the ModelCluster they belong to.

An informer (:func:`modelcluster.kube.informer.run_informer`) keeps each table current;
listeners hear of every change. The operator's store holds one per kind; the gateway's
:class:`ClusterTable` is the same table keyed by each ModelCluster's own name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from modelcluster.kube.objects import Body, ClusterKey, name_of, newer, own_key, resource_version

#: Called with the cluster's key, the object now (None once deleted) and before (None when new).
Listener = Callable[[ClusterKey, Body | None, Body | None], None]


class Index:
    """Objects grouped by the cluster they belong to; listeners hear of every change."""

    def __init__(
        self, key_of: Callable[[Mapping[str, Any]], ClusterKey | None], trim: Callable[[Body], Body] | None = None
    ) -> None:
        self.key_of = key_of
        self.trim = trim
        self.items: dict[ClusterKey, dict[str, Body]] = {}
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def _notify(self, key: ClusterKey, new: Body | None, old: Body | None) -> None:
        for listener in self._listeners:
            listener(key, new, old)

    def reset(self, items: list[Body], namespace: str | None = None) -> None:
        """Replace everything (or everything in ``namespace``) with a fresh list; what vanished counts as deleted."""
        stale = {
            (key, name): obj
            for key, group in self.items.items()
            if namespace is None or key[0] == namespace
            for name, obj in group.items()
        }
        for item in items:
            key = self.key_of(item)
            if key is not None:
                stale.pop((key, name_of(item)), None)
        for obj in stale.values():
            self.event("DELETED", obj)
        for item in items:
            self.event("ADDED", item)

    def event(self, kind: str, obj: Body) -> None:
        key = self.key_of(obj)
        if key is None:
            return
        name = name_of(obj)
        group = self.items.setdefault(key, {})
        old = group.get(name)
        if kind == "DELETED":
            group.pop(name, None)
            if not group:
                del self.items[key]
            self._notify(key, None, old)
            return
        kept = self.trim(obj) if self.trim is not None else obj
        group[name] = kept
        self._notify(key, kept, old)

    def one(self, key: ClusterKey) -> Body | None:
        group = self.items.get(key)
        return next(iter(group.values())) if group else None

    def named(self, key: ClusterKey, name: str) -> Body | None:
        return (self.items.get(key) or {}).get(name)

    def all(self, key: ClusterKey) -> list[Body]:
        return list((self.items.get(key) or {}).values())


class NamespaceView:
    """One namespace's informer feeding an :class:`Index` shared by several namespaces."""

    def __init__(self, index: Index, namespace: str) -> None:
        self.index = index
        self.namespace = namespace

    def reset(self, items: list[Body]) -> None:
        self.index.reset(items, self.namespace)

    def event(self, kind: str, obj: Body) -> None:
        self.index.event(kind, obj)


class ClusterTable(Index):
    """Every ModelCluster by (namespace, name): the gateway's hot path reads it, never the API.

    ``on_change`` hears the key of every change.
    """

    def __init__(self, on_change: Callable[[ClusterKey], None] | None = None) -> None:
        super().__init__(own_key)
        self.on_change = on_change
        self.subscribe(self._changed)

    def get(self, key: ClusterKey) -> Body | None:
        return self.one(key)

    def in_namespace(self, namespace: str) -> list[Body]:
        return [body for (ns, _), group in sorted(self.items.items()) if ns == namespace for body in group.values()]

    def put(self, obj: Body) -> None:
        """Record an object the gateway itself just wrote, unless the watch already brought a newer one.

        The watch can deliver the write and the writes after it (the operator's first status comes within
        milliseconds of a create) before the answer to the write is read: that answer must not replace them.
        """
        current = self.named(own_key(obj), name_of(obj))
        known = current is not None and resource_version(current) and resource_version(obj)
        if known and not newer(obj, current):
            return
        self.event("MODIFIED", obj)

    def _changed(self, key: ClusterKey, new: Body | None, old: Body | None) -> None:
        if self.on_change is not None:
            self.on_change(key)
