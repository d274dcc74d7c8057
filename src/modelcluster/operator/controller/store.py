"""What the operator knows of the cluster: ModelClusters and their children, kept by informers.

One list-and-watch per kind (per watched namespace in namespaced mode) feeds both the
reconciler and the autoscaler. Reconciles read Deployments, Services and pods from here
instead of asking the apiserver, and every change wakes the reconcile of the cluster it
belongs to.
"""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass, field
from typing import Any

from modelcluster.api import GROUP, PLURAL, VERSION
from modelcluster.api.field_managers import OPERATOR as FIELD_MANAGER
from modelcluster.api.labels import MANAGED_SELECTOR_TEXT
from modelcluster.kube.client import Kube
from modelcluster.kube.index import Index, NamespaceView
from modelcluster.kube.informer import ListCall, Sink, run_informer
from modelcluster.kube.objects import Body, metadata_of, own_key, owner_key

#: The field manager whose managedFields entry is kept (drift is judged on it); every other one is dropped.
#: Stores of thousands of objects keep only what the operator reads.
KEPT_MANAGER = FIELD_MANAGER


def _own_fields_only(obj: Body) -> Body:
    metadata = dict(metadata_of(obj))
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
        custom, apps, core = kube.custom, kube.apps, kube.core
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
