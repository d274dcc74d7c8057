"""Ready model pods per cluster, from the EndpointSlices of the clusters' Services.

Pure parsing (:func:`endpoints_of_slice`) plus :class:`EndpointTable`, the in-memory
table an informer keeps current. Terminating endpoints are never ready here, so a
leaving pod gets no new requests. ``on_change`` hears of every change of a cluster's set.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from modelcluster.kube.objects import ClusterKey, metadata_of

SERVICE_NAME_LABEL = "kubernetes.io/service-name"


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


def endpoints_of_slice(slice_: Mapping[str, Any]) -> tuple[Endpoint, ...]:
    """The ready, non-terminating endpoints of one EndpointSlice."""
    port = _slice_port(slice_)
    if port is None:
        return ()
    found: list[Endpoint] = []
    for endpoint in slice_.get("endpoints") or []:
        conditions = endpoint.get("conditions") or {}
        if conditions.get("ready") is False or conditions.get("terminating") is True:
            continue
        pod = (endpoint.get("targetRef") or {}).get("name") or ""
        found.extend(
            Endpoint(address=str(address), port=port, pod=str(pod)) for address in endpoint.get("addresses") or []
        )
    return tuple(found)


def slice_owner(slice_: Mapping[str, Any]) -> tuple[ClusterKey, str] | None:
    """The cluster a slice belongs to and the slice's own name."""
    metadata = metadata_of(slice_)
    service = (metadata.get("labels") or {}).get(SERVICE_NAME_LABEL)
    namespace, name = metadata.get("namespace"), metadata.get("name")
    if not service or not namespace or not name:
        return None
    return (str(namespace), str(service)), str(name)


class EndpointTable:
    """Cluster -> ready endpoints, kept by an EndpointSlice informer."""

    def __init__(self, on_change: Callable[[ClusterKey], None] | None = None) -> None:
        self._slices: dict[ClusterKey, dict[str, tuple[Endpoint, ...]]] = {}
        self._ready: dict[ClusterKey, tuple[Endpoint, ...]] = {}
        self.on_change = on_change

    def ready(self, key: ClusterKey) -> tuple[Endpoint, ...]:
        return self._ready.get(key, ())

    def reset(self, items: list[dict[str, Any]]) -> None:
        keys = set(self._slices)
        self._slices = {}
        for item in items:
            self._store(item)
        for key in keys | set(self._slices):
            self._refresh(key)

    def event(self, kind: str, obj: dict[str, Any]) -> None:
        owner = slice_owner(obj)
        if owner is None:
            return
        key, name = owner
        if kind == "DELETED":
            self._slices.get(key, {}).pop(name, None)
        else:
            self._store(obj)
        self._refresh(key)

    def _store(self, obj: Mapping[str, Any]) -> None:
        owner = slice_owner(obj)
        if owner is not None:
            key, name = owner
            self._slices.setdefault(key, {})[name] = endpoints_of_slice(obj)

    def _refresh(self, key: ClusterKey) -> None:
        slices = self._slices.get(key) or {}
        if not slices:
            self._slices.pop(key, None)
        ready = tuple(sorted({e for endpoints in slices.values() for e in endpoints}, key=lambda e: e.url))
        if ready != self._ready.get(key, ()):
            if ready:
                self._ready[key] = ready
            else:
                self._ready.pop(key, None)
            self.notify(key)

    def notify(self, key: ClusterKey) -> None:
        if self.on_change is not None:
            self.on_change(key)
