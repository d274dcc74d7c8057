"""``spec.replicas`` of a model's Deployment: computed here and nowhere else.

The Deployment body (:mod:`.deployment`) never carries ``replicas``; this value
is applied on its own, under its own field manager, so that the autoscaler can
take over exactly this one field later without touching the rest.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from modelcluster.api import ModelClusterSpec, ModelClusterStatus, field_managers
from modelcluster.api.modelcluster import WAKE_ANNOTATION
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
