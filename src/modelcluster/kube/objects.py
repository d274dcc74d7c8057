"""Helpers for Kubernetes objects as plain JSON dicts: metadata access, keys, RFC 3339 time."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from modelcluster.api.labels import INSTANCE

Body = dict[str, Any]
#: (namespace, name) of a ModelCluster: the key of every table.
ClusterKey = tuple[str, str]


def metadata_of(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    """``obj["metadata"]``, or an empty mapping when it is missing or null."""
    found = obj.get("metadata")
    return found if isinstance(found, Mapping) else {}


def name_of(obj: Mapping[str, Any]) -> str:
    return str(metadata_of(obj).get("name"))


def labels_of(obj: Mapping[str, Any]) -> Mapping[str, str]:
    return metadata_of(obj).get("labels") or {}


def annotations_of(obj: Mapping[str, Any]) -> Mapping[str, str]:
    return metadata_of(obj).get("annotations") or {}


def own_key(obj: Mapping[str, Any]) -> ClusterKey:
    """An object's own (namespace, name): a ModelCluster's key."""
    meta = metadata_of(obj)
    return (str(meta.get("namespace")), str(meta.get("name")))


def owner_key(obj: Mapping[str, Any]) -> ClusterKey | None:
    """The (namespace, name) of the ModelCluster a child belongs to, from its instance label."""
    meta = metadata_of(obj)
    instance = (meta.get("labels") or {}).get(INSTANCE)
    return (str(meta.get("namespace")), str(instance)) if instance else None


def resource_version(obj: Mapping[str, Any]) -> str | None:
    value = metadata_of(obj).get("resourceVersion")
    return str(value) if value else None


def rfc3339(moment: datetime) -> str:
    """Seconds precision in UTC (``2026-01-02T03:04:05Z``), as ``metav1.Time`` is written."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def rfc3339_micro(moment: datetime) -> str:
    """Microseconds precision in UTC, as ``metav1.MicroTime`` is written."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def rfc3339_from_timestamp(stamp: float) -> str:
    return rfc3339(datetime.fromtimestamp(stamp, UTC))


def parse_rfc3339(value: str) -> datetime:
    """An RFC 3339 time as the API writes it (``Z`` or an offset; with or without fractions)."""
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def newer(live: Mapping[str, Any] | None, known: Mapping[str, Any] | None) -> bool:
    """Whether ``live`` is a later version of the object than ``known`` (a store copy may lag behind an apply).

    etcd's resource versions grow with every write; anything unparsable counts as newer. No object is not newer.
    """
    if live is None:
        return False
    try:
        return int(_version(live)) > int(_version(known))
    except ValueError:
        return _version(live) != _version(known)


def _version(obj: Mapping[str, Any] | None) -> str:
    return resource_version(obj or {}) or ""
