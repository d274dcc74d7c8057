"""EndpointSlices and Services as the EndpointSlice controller and the operator make them, for routing tests.

The gateway routes only from a slice the EndpointSlice controller manages for the operator's Service of the
cluster (:mod:`modelcluster.gateway.endpoints`); these build such objects, and :func:`trusting` wires an
endpoint table that knows the Services and clusters they name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from modelcluster.gateway.endpoints import (
    SERVICE_NAME_LABEL,
    SLICE_CONTROLLER,
    SLICE_MANAGED_BY_LABEL,
    EndpointTable,
)
from modelcluster.kube.objects import ClusterKey

Body = dict[str, Any]


def service_uid(name: str) -> str:
    return f"svc-uid-{name}"


def cluster_uid(name: str) -> str:
    return f"mc-uid-{name}"


def slice_metadata(name: str, namespace: str, service: str, owner_uid: str | None = None) -> Body:
    """The metadata the EndpointSlice controller gives a slice of Service ``service`` (uid ``owner_uid``)."""
    return {
        "name": name,
        "namespace": namespace,
        "labels": {SERVICE_NAME_LABEL: service, SLICE_MANAGED_BY_LABEL: SLICE_CONTROLLER},
        "ownerReferences": [
            {
                "apiVersion": "v1",
                "kind": "Service",
                "name": service,
                "uid": owner_uid or service_uid(service),
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ],
    }


def operator_service(namespace: str, name: str, owner_uid: str | None = None, uid: str | None = None) -> Body:
    """The operator's Service of cluster ``name``: controlled by the ModelCluster of that name (uid ``owner_uid``)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": uid or service_uid(name),
            "ownerReferences": [
                {
                    "apiVersion": "modelcluster.dev/v1alpha1",
                    "kind": "ModelCluster",
                    "name": name,
                    "uid": owner_uid or cluster_uid(name),
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
    }


def known_clusters(keys: Iterable[ClusterKey]) -> Callable[[ClusterKey], str | None]:
    """A ``cluster_uid`` lookup that knows ``keys`` (by :func:`cluster_uid`)."""
    known = set(keys)
    return lambda key: cluster_uid(key[1]) if key in known else None


def trusting(table: EndpointTable, *keys: ClusterKey) -> EndpointTable:
    """``table`` wired to know the operator's Service and the ModelCluster of each of ``keys``."""
    table.cluster_uid = known_clusters(keys)
    table.services.reset([operator_service(namespace, name) for namespace, name in keys])
    return table
