"""The model cache of a cluster's pods: a pod-local emptyDir, an existing claim, or a claim per cluster."""

from __future__ import annotations

from typing import Any

from modelcluster.api.labels import standard_labels
from modelcluster.operator.builders.workload import Workload

DEFAULT_ACCESS_MODE = "ReadWriteOnce"


def cache_claim_name(workload: Workload) -> str | None:
    """The PersistentVolumeClaim the pods mount at the cache directory; None for an emptyDir."""
    cache = workload.placement.cache
    if cache is None:
        return None
    return cache.claim_name or f"{workload.name}-model-cache"


def cache_access_mode(workload: Workload) -> str | None:
    """The access mode of the claim created for the cluster; None when no claim is created."""
    cache = workload.placement.cache
    if cache is None or cache.size is None:
        return None
    return cache.access_mode or DEFAULT_ACCESS_MODE


def build_cache_claim(workload: Workload) -> dict[str, Any] | None:
    """The claim created for (and owned by) the cluster, when its cache asks for one by size."""
    cache = workload.placement.cache
    if cache is None or cache.size is None:
        return None
    placement = workload.placement
    spec: dict[str, Any] = {
        "accessModes": [cache_access_mode(workload)],
        "resources": {"requests": {"storage": cache.size}},
    }
    if cache.storage_class_name is not None:
        spec["storageClassName"] = cache.storage_class_name
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": cache_claim_name(workload),
            "namespace": workload.namespace,
            "labels": standard_labels(workload.name, placement.model_id, placement.task),
            "ownerReferences": [workload.owner.reference()],
        },
        "spec": spec,
    }
