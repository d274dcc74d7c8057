"""Ready model pods per cluster, from the EndpointSlices of the clusters' Services.

Pure parsing and decisions (:func:`endpoints_of_slice`, :func:`slice_owner`, :func:`slice_service_uid`,
:func:`service_record`, :func:`routable`) plus :class:`EndpointTable`, the in-memory table informers keep
current. Terminating endpoints are never ready here, so a leaving pod gets no new requests. ``on_change``
hears of every change of a cluster's set.

**Only the operator's Service routes.** Anyone who may create an EndpointSlice in a namespace can label it
``kubernetes.io/service-name=<cluster>`` and list any address. So a slice counts only when the EndpointSlice
controller manages it for a Service (its ``managed-by`` label and a controller ownerReference to a Service of
the labelled name), that Service is the one the table knows (same uid), and that Service is the operator's
child of the cluster: its controller ownerReference is the ModelCluster of the same name, by uid. Hand-made
slices, slices of a hand-made Service, and a Service of another owner are ignored; the table re-decides a
cluster whenever its slices, its Service or the cluster itself change.

**A borrowed warm standby** starts to serve before its cluster's slice lists it: the operator names it in the
cluster's ``status.borrowedPod`` (``borrowed``, wired to the gateway's ModelCluster table) as it claims it, and
the table counts it among the cluster's starting pods from then on, so the first-answer probe finds it at once.
Only the operator writes a ModelCluster's status (the status subresource is in no role but the operator's).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from modelcluster.api import GROUP, KIND
from modelcluster.kube.objects import ClusterKey, metadata_of

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
SLICE_MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
SLICE_CONTROLLER = "endpointslice-controller.k8s.io"


@dataclass(frozen=True)
class Endpoint:
    """One ready pod of a cluster: where to send its requests."""

    address: str
    port: int
    pod: str

    @property
    def url(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"http://{host}:{self.port}"


def _slice_port(slice_: Mapping[str, Any]) -> int | None:
    ports = [p for p in slice_.get("ports") or [] if isinstance(p, Mapping) and p.get("port")]
    named = next((p for p in ports if p.get("name") == "http"), ports[0] if ports else None)
    return int(named["port"]) if named else None


def endpoints_of_slice(slice_: Mapping[str, Any], *, starting: bool = False) -> tuple[Endpoint, ...]:
    """The ready, non-terminating endpoints of one EndpointSlice; with ``starting``, the not yet ready ones.

    A starting endpoint is a pod that has an address but is not ready and not terminating: the gateway may
    probe it itself and route to it on its first healthy answer (:mod:`modelcluster.gateway.first_answer`).
    """
    port = _slice_port(slice_)
    if port is None:
        return ()
    found: list[Endpoint] = []
    for endpoint in slice_.get("endpoints") or []:
        conditions = endpoint.get("conditions") or {}
        if conditions.get("terminating") is True or (conditions.get("ready") is False) != starting:
            continue
        pod = (endpoint.get("targetRef") or {}).get("name") or ""
        found.extend(
            Endpoint(address=str(address), port=port, pod=str(pod)) for address in endpoint.get("addresses") or []
        )
    return tuple(found)


def slice_owner(slice_: Mapping[str, Any]) -> tuple[ClusterKey, str] | None:
    """The cluster a slice claims to belong to (its service-name label) and the slice's own name."""
    metadata = metadata_of(slice_)
    service = (metadata.get("labels") or {}).get(SERVICE_NAME_LABEL)
    namespace, name = metadata.get("namespace"), metadata.get("name")
    if not service or not namespace or not name:
        return None
    return (str(namespace), str(service)), str(name)


def _controller(obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The object's ownerReference with ``controller: true`` (there is at most one), if any."""
    for reference in metadata_of(obj).get("ownerReferences") or []:
        if isinstance(reference, Mapping) and reference.get("controller") is True:
            return reference
    return None


def slice_service_uid(slice_: Mapping[str, Any]) -> str | None:
    """The uid of the Service whose EndpointSlice controller manages ``slice_``; None for any other slice.

    That is: the controller's ``managed-by`` label, and a controller ownerReference to a ``v1`` Service named
    as the slice's service-name label.
    """
    metadata = metadata_of(slice_)
    labels = metadata.get("labels") or {}
    if labels.get(SLICE_MANAGED_BY_LABEL) != SLICE_CONTROLLER:
        return None
    service = labels.get(SERVICE_NAME_LABEL)
    owner = _controller(slice_)
    if not service or owner is None:
        return None
    if owner.get("apiVersion") != "v1" or owner.get("kind") != "Service" or owner.get("name") != service:
        return None
    uid = owner.get("uid")
    return str(uid) if uid else None


@dataclass(frozen=True)
class ServiceRecord:
    """What routing needs of one Service: its uid and the uid of the ModelCluster that controls it (if any)."""

    uid: str
    cluster_uid: str | None


def service_record(service: Mapping[str, Any]) -> tuple[ClusterKey, ServiceRecord] | None:
    """A Service's (namespace, name) and record; its cluster uid only when a ModelCluster of its name controls it."""
    metadata = metadata_of(service)
    namespace, name, uid = metadata.get("namespace"), metadata.get("name"), metadata.get("uid")
    if not namespace or not name or not uid:
        return None
    owner = _controller(service)
    cluster_uid: str | None = None
    if (
        owner is not None
        and str(owner.get("apiVersion") or "").split("/")[0] == GROUP
        and owner.get("kind") == KIND
        and owner.get("name") == name
        and owner.get("uid")
    ):
        cluster_uid = str(owner["uid"])
    return (str(namespace), str(name)), ServiceRecord(uid=str(uid), cluster_uid=cluster_uid)


def routable(slice_service: str | None, service: ServiceRecord | None, cluster_uid: str | None) -> bool:
    """Whether a slice's endpoints may take a cluster's requests.

    ``slice_service`` is :func:`slice_service_uid` of the slice, ``service`` the record of the Service of the
    cluster's name, ``cluster_uid`` the uid of the ModelCluster. Yes only when the slice is the EndpointSlice
    controller's for exactly that Service and the Service is the cluster's own child.
    """
    return (
        bool(slice_service)
        and service is not None
        and service.uid == slice_service
        and bool(cluster_uid)
        and service.cluster_uid == cluster_uid
    )


def _no_cluster(key: ClusterKey) -> str | None:
    return None


def _no_borrowed(key: ClusterKey) -> Endpoint | None:
    return None


def borrowed_endpoint(cluster: Mapping[str, Any] | None) -> Endpoint | None:
    """The warm standby a cluster's status names as serving it (``status.borrowedPod``), if it names one."""
    found = ((cluster or {}).get("status") or {}).get("borrowedPod")
    if not isinstance(found, Mapping):
        return None
    name, address, port = found.get("name"), found.get("address"), found.get("port")
    if not isinstance(name, str) or not isinstance(address, str) or not address:
        return None
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        return None
    return Endpoint(address=address, port=port, pod=name)


@dataclass(frozen=True)
class _Slice:
    service_uid: str | None
    endpoints: tuple[Endpoint, ...]
    starting: tuple[Endpoint, ...] = ()


class ServiceTable:
    """The operator's Services by (namespace, name), kept by a Service informer; ``on_change`` hears every key."""

    def __init__(self, on_change: Callable[[ClusterKey], None] | None = None) -> None:
        self._records: dict[ClusterKey, ServiceRecord] = {}
        self.on_change = on_change

    def get(self, key: ClusterKey) -> ServiceRecord | None:
        return self._records.get(key)

    def reset(self, items: list[dict[str, Any]]) -> None:
        before = self._records
        self._records = dict(found for found in map(service_record, items) if found is not None)
        for key in set(before) | set(self._records):
            if before.get(key) != self._records.get(key):
                self._notify(key)

    def event(self, kind: str, obj: dict[str, Any]) -> None:
        found = service_record(obj)
        if found is None:
            return
        key, record = found
        before = self._records.get(key)
        if kind == "DELETED":
            if before is None or before.uid != record.uid:
                return  # an older Service of that name: the one known now stays
            del self._records[key]
        else:
            self._records[key] = record
        if self._records.get(key) != before:
            self._notify(key)

    def _notify(self, key: ClusterKey) -> None:
        if self.on_change is not None:
            self.on_change(key)


class EndpointTable:
    """Cluster -> ready endpoints, kept by an EndpointSlice informer; only slices :func:`routable` count.

    ``services`` (a Service informer keeps it) and ``cluster_uid`` (the gateway wires it to its ModelCluster
    table, and calls :meth:`refresh` when a cluster changes) decide that; left unwired, nothing is routable.
    ``borrowed`` gives the standby a cluster's status names (a starting pod too); ``on_starting`` hears a
    cluster whose starting pods changed.
    """

    def __init__(
        self,
        on_change: Callable[[ClusterKey], None] | None = None,
        cluster_uid: Callable[[ClusterKey], str | None] = _no_cluster,
        borrowed: Callable[[ClusterKey], Endpoint | None] = _no_borrowed,
    ) -> None:
        self._slices: dict[ClusterKey, dict[str, _Slice]] = {}
        self._ready: dict[ClusterKey, tuple[Endpoint, ...]] = {}
        self._starting: dict[ClusterKey, tuple[Endpoint, ...]] = {}
        self.on_change = on_change
        self.on_starting: Callable[[ClusterKey], None] | None = None
        self.cluster_uid = cluster_uid
        self.borrowed = borrowed
        self.services = ServiceTable(on_change=self.refresh)

    def ready(self, key: ClusterKey) -> tuple[Endpoint, ...]:
        return self._ready.get(key, ())

    def starting(self, key: ClusterKey) -> tuple[Endpoint, ...]:
        """Pods of ``key`` with an address that are neither ready nor terminating (trusted slices only)."""
        return self._starting.get(key, ())

    def reset(self, items: list[dict[str, Any]]) -> None:
        keys = set(self._slices)
        self._slices = {}
        for item in items:
            self._store(item)
        for key in keys | set(self._slices):
            self.refresh(key)

    def event(self, kind: str, obj: dict[str, Any]) -> None:
        owner = slice_owner(obj)
        if owner is None:
            return
        key, name = owner
        if kind == "DELETED":
            self._slices.get(key, {}).pop(name, None)
        else:
            self._store(obj)
        self.refresh(key)

    def _store(self, obj: Mapping[str, Any]) -> None:
        owner = slice_owner(obj)
        if owner is not None:
            key, name = owner
            self._slices.setdefault(key, {})[name] = _Slice(
                slice_service_uid(obj), endpoints_of_slice(obj), endpoints_of_slice(obj, starting=True)
            )

    def refresh(self, key: ClusterKey) -> None:
        """Decide ``key`` again (its slices, its Service or its cluster changed); ``on_change`` hears a new set."""
        slices = self._slices.get(key) or {}
        if not slices:
            self._slices.pop(key, None)
        service, cluster_uid = self.services.get(key), self.cluster_uid(key)
        trusted = [s for s in slices.values() if routable(s.service_uid, service, cluster_uid)]
        ready = tuple(sorted({e for s in trusted for e in s.endpoints}, key=lambda e: e.url))
        standby = self.borrowed(key)
        # The standby first: a claim is what a wake waits for, so it is probed even when many pods start.
        found = {e for s in trusted for e in s.starting} - set(ready) - {standby}
        starting = tuple(sorted(found, key=lambda e: e.url))
        if standby is not None and standby not in ready:
            starting = (standby, *starting)
        if starting != self._starting.get(key, ()):
            if starting:
                self._starting[key] = starting
            else:
                self._starting.pop(key, None)
            if self.on_starting is not None:
                self.on_starting(key)
        if ready != self._ready.get(key, ()):
            if ready:
                self._ready[key] = ready
            else:
                self._ready.pop(key, None)
            self.notify(key)

    def notify(self, key: ClusterKey) -> None:
        if self.on_change is not None:
            self.on_change(key)
