"""Kubernetes Events about a ModelCluster, built here and posted by whoever decided something."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from modelcluster.kube.objects import metadata_of, rfc3339

COMPONENT = "modelcluster-operator"
#: The apiserver caps an Event's message at 1 KiB.
MESSAGE_LIMIT = 1024


def build_event(
    body: Mapping[str, Any],
    reason: str,
    message: str,
    now: datetime,
    *,
    warning: bool = False,
    component: str = COMPONENT,
) -> dict[str, Any]:
    """A core/v1 Event about ``body`` (a ModelCluster as the API returns it)."""
    metadata = metadata_of(body)
    namespace, name = metadata.get("namespace"), metadata.get("name")
    stamp = rfc3339(now)
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{name}.", "namespace": namespace},
        "involvedObject": {
            "apiVersion": body.get("apiVersion"),
            "kind": body.get("kind"),
            "name": name,
            "namespace": namespace,
            "uid": metadata.get("uid"),
        },
        "reason": reason,
        "message": message[:MESSAGE_LIMIT],
        "type": "Warning" if warning else "Normal",
        "source": {"component": component},
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }
