"""``spec.replicas`` of a model's Deployment: computed here and nowhere else.

The Deployment body (:mod:`.deployment`) never carries ``replicas`` but in the one apply that creates
the Deployment, which sets the count computed here. The autoscaler's first forced apply of this one
field (:func:`build_replicas_apply`, under its own field manager) takes it over without touching the rest;
until then, every later apply of the body carries the live count (:func:`carried_replicas`), since an apply
leaving out a field its manager owns alone would drop it.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from modelcluster.api import ModelClusterSpec, ModelClusterStatus, field_managers
from modelcluster.api.modelcluster import WAKE_ANNOTATION
from modelcluster.kube.objects import metadata_of
from modelcluster.operator.builders.children import owns_replicas
from modelcluster.operator.builders.status import parse_time

REPLICAS_FIELD_MANAGER = field_managers.OPERATOR_REPLICAS


def woken_at(metadata: Mapping[str, Any]) -> datetime | None:
    """When the gateway last asked for this cluster to wake (its annotation), if ever."""
    return parse_time((metadata.get("annotations") or {}).get(WAKE_ANNOTATION))


def wake_remaining(spec: ModelClusterSpec, woken: datetime | None, now: datetime) -> float | None:
    """Seconds the wake of ``woken`` still holds a cluster up (``spec.timeout`` from the wake), or None."""
    if woken is None:
        return None
    left = (woken + timedelta(seconds=spec.timeout) - now).total_seconds()
    return left if left > 0 else None


def desired_replicas(
    spec: ModelClusterSpec,
    status: ModelClusterStatus | None,
    woken: datetime | None = None,
    now: datetime | None = None,
) -> int:
    """The replica count the Deployment should run now: the desired capacity, within bounds.

    A cluster whose capacity comes to zero runs ``max(desired, 1)`` while a wake holds it up.
    ``status`` is where queue depth and idleness will come from; for now capacity and wakes decide.
    """
    capacity = spec.capacity
    base = max(capacity.min, min(capacity.desired, capacity.effective_max))
    if base == 0 and now is not None and wake_remaining(spec, woken, now) is not None:
        return max(capacity.desired, 1)
    return base


def build_replicas_apply(name: str, namespace: str, replicas: int) -> dict[str, Any]:
    """The apply body that sets only ``spec.replicas`` (field manager :data:`REPLICAS_FIELD_MANAGER`)."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"replicas": replicas},
    }


@dataclass(frozen=True)
class Carried:
    """The live replica count an apply of the Deployment body carries, and the version it was read at."""

    replicas: int
    resource_version: str


def carried_replicas(live: Mapping[str, Any] | None, manager: str) -> Carried | None:
    """What an apply of the Deployment body by ``manager`` must carry over ``live``: its count while ``manager``
    still owns it (the create set it; the autoscaler has not taken it over), else None (nothing to carry)."""
    if live is None or not owns_replicas(live, manager):
        return None
    replicas = (live.get("spec") or {}).get("replicas")
    version = metadata_of(live).get("resourceVersion")
    if not isinstance(replicas, int) or isinstance(replicas, bool) or not version:
        return None
    return Carried(replicas, str(version))


def with_carried(desired: Mapping[str, Any], carried: Carried) -> dict[str, Any]:
    """``desired`` with the live count, under a ``resourceVersion`` precondition: should the autoscaler change the
    count meanwhile, the apiserver answers 409 instead of the apply setting it back."""
    body: dict[str, Any] = copy.deepcopy(dict(desired))
    body["metadata"]["resourceVersion"] = carried.resource_version
    body.setdefault("spec", {})["replicas"] = carried.replicas
    return body
