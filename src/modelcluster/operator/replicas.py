"""``spec.replicas`` of a model's Deployment: computed here and nowhere else.

The Deployment body (:mod:`.deployment`) never carries ``replicas``; this value
is applied on its own, under its own field manager, so that the autoscaler can
take over exactly this one field later without touching the rest.
"""

from __future__ import annotations

from typing import Any

from modelcluster.api import ModelClusterSpec, ModelClusterStatus

REPLICAS_FIELD_MANAGER = "modelcluster-operator-replicas"


def desired_replicas(spec: ModelClusterSpec, status: ModelClusterStatus | None) -> int:
    """The replica count the Deployment should run now: the desired capacity, within bounds.

    ``status`` is where queue depth and idleness will come from; for now the
    capacity alone decides.
    """
    capacity = spec.capacity
    return max(capacity.min, min(capacity.desired, capacity.effective_max))


def build_replicas_apply(name: str, namespace: str, replicas: int) -> dict[str, Any]:
    """The apply body that sets only ``spec.replicas`` (field manager :data:`REPLICAS_FIELD_MANAGER`)."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"replicas": replicas},
    }
