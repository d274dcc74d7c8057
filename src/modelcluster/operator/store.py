"""What the operator knows of the cluster: ModelClusters and their children, kept by informers.

One list-and-watch per kind (per watched namespace in namespaced mode) feeds both the
reconciler and the autoscaler. Reconciles read Deployments, Services and pods from here
instead of asking the apiserver, and every change wakes the reconcile of the cluster it
belongs to.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kubernetes_asyncio import client

from modelcluster.api import GROUP, PLURAL, VERSION
from modelcluster.api.labels import INSTANCE, MANAGED_SELECTOR_TEXT
from modelcluster.gateway.informer import ListCall, Sink, run_informer
from modelcluster.operator.config import FIELD_MANAGER
from modelcluster.operator.kube import Kube

Body = dict[str, Any]
ClusterKey = tuple[str, str]
#: Called with the cluster's key, the object now (None once deleted) and before (None when new).
Listener = Callable[[ClusterKey, Body | None, Body | None], None]


def own_key(obj: Mapping[str, Any]) -> ClusterKey | None:
    """A ModelCluster's own (namespace, name)."""
    metadata = obj.get("metadata") or {}
    return (str(metadata.get("namespace")), str(metadata.get("name")))


def owner_key(obj: Mapping[str, Any]) -> ClusterKey | None:
    """The (namespace, name) of the ModelCluster a child belongs to, from its instance label."""
    metadata = obj.get("metadata") or {}
    instance = (metadata.get("labels") or {}).get(INSTANCE)
    return (str(metadata.get("namespace")), str(instance)) if instance else None


#: The field manager whose managedFields entry is kept (drift is judged on it); every other one is dropped.
#: Stores of thousands of objects keep only what the operator reads.
KEPT_MANAGER = FIELD_MANAGER


def _own_fields_only(obj: Body) -> Body:
    metadata = dict(obj.get("metadata") or {})
    managed = [m for m in metadata.get("managedFields") or [] if m.get("manager") == KEPT_MANAGER]
    if managed:
        metadata["managedFields"] = managed
    else:
        metadata.pop("managedFields", None)
    return {**obj, "metadata": metadata}


def slim_deployment(obj: Body) -> Body:
    """A Deployment as the operator needs it: no pod template (``spec.replicas`` and ``status`` stay)."""
    slimmed = _own_fields_only(obj)
    slimmed["spec"] = {key: value for key, value in (obj.get("spec") or {}).items() if key != "template"}
    return slimmed


def slim_pod(obj: Body) -> Body:
    """A pod as the operator needs it: metadata and status."""
    slimmed = _own_fields_only(obj)
    slimmed.pop("spec", None)
    return slimmed


def slim_service(obj: Body) -> Body:
    return _own_fields_only(obj)


def _name(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name"))


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
                stale.pop((key, _name(item)), None)
        for obj in stale.values():
            self.event("DELETED", obj)
        for item in items:
            self.event("ADDED", item)

    def event(self, kind: str, obj: Body) -> None:
        key = self.key_of(obj)
        if key is None:
            return
        name = _name(obj)
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


@dataclass
class Store:
    """ModelClusters, and the Deployments, Services and pods the operator manages."""

    clusters: Index = field(default_factory=lambda: Index(own_key))
    deployments: Index = field(default_factory=lambda: Index(owner_key, slim_deployment))
    services: Index = field(default_factory=lambda: Index(owner_key, slim_service))
    pods: Index = field(default_factory=lambda: Index(owner_key, slim_pod))
    #: Set once every informer has delivered its first full list.
    synced: asyncio.Event = field(default_factory=asyncio.Event)

    def informers(
        self, kube: Kube, namespaces: tuple[str, ...], *, clusters: bool = True
    ) -> list[tuple[ListCall, Sink, str, dict[str, Any]]]:
        """What to list and watch: everything, or (namespaced mode) each of ``namespaces`` on its own.

        With ``clusters`` false, ModelClusters come from elsewhere (the operator's kopf watch).
        """
        custom = client.CustomObjectsApi(kube.api_client)
        apps = client.AppsV1Api(kube.api_client)
        core = client.CoreV1Api(kube.api_client)
        selector = {"label_selector": MANAGED_SELECTOR_TEXT}
        if not namespaces:
            return [
                *([(functools.partial(custom.list_cluster_custom_object, GROUP, VERSION, PLURAL), self.clusters,
                    "ModelClusters", {})] if clusters else []),
                (apps.list_deployment_for_all_namespaces, self.deployments, "Deployments", selector),
                (core.list_service_for_all_namespaces, self.services, "Services", selector),
                (core.list_pod_for_all_namespaces, self.pods, "Pods", selector),
            ]  # fmt: skip
        informers: list[tuple[ListCall, Sink, str, dict[str, Any]]] = []
        for namespace in namespaces:
            if clusters:
                informers.append(
                    (functools.partial(custom.list_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL),
                     NamespaceView(self.clusters, namespace), f"ModelClusters in {namespace}", {})
                )  # fmt: skip
            informers += [
                (functools.partial(apps.list_namespaced_deployment, namespace),
                 NamespaceView(self.deployments, namespace), f"Deployments in {namespace}", selector),
                (functools.partial(core.list_namespaced_service, namespace),
                 NamespaceView(self.services, namespace), f"Services in {namespace}", selector),
                (functools.partial(core.list_namespaced_pod, namespace),
                 NamespaceView(self.pods, namespace), f"Pods in {namespace}", selector),
            ]  # fmt: skip
        return informers

    async def run(self, kube: Kube, namespaces: tuple[str, ...] = (), *, clusters: bool = True) -> None:
        """List and watch until cancelled; ``synced`` is set once every first list is in."""
        informers = self.informers(kube, namespaces, clusters=clusters)
        synced = [asyncio.Event() for _ in informers]
        watches = [
            asyncio.create_task(run_informer(kube, call, sink, event, what, **kwargs))
            for (call, sink, what, kwargs), event in zip(informers, synced, strict=True)
        ]
        try:
            await asyncio.gather(*(event.wait() for event in synced))
            self.synced.set()
            await asyncio.gather(*watches)
        finally:
            for task in watches:
                task.cancel()
            await asyncio.gather(*watches, return_exceptions=True)
