"""The gateway's check of a tenant's quotas before it writes a cluster: pure, over the tables it keeps.

The apiserver enforces the same quotas through the Tenant's ResourceQuota (ModelClusters, GPUs of the pods
that run), but only as pods are created; the gateway refuses up front, for the cluster's whole range:

- ``modelClusters``: the clusters of the namespace, counting the new one;
- ``replicas``: the sum of every cluster's ``capacity.max`` (``desired`` when unset);
- ``gpus``: the sum over clusters of ``capacity.max`` times the GPUs one replica requests (its catalog tier).

:func:`quota_refusal` names the quota, its limit and what is in use. A namespace without a Tenant has no quota.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from modelcluster.api.tenant import Tenant
from modelcluster.kube.objects import Body, name_of

#: GPUs one replica of a cluster with this spec requests (0 when the catalog cannot place it).
GpusPerReplica = Callable[[Mapping[str, Any]], int]


@dataclass(frozen=True)
class Use:
    """What some clusters take of the quotas."""

    clusters: int = 0
    replicas: int = 0
    gpus: int = 0

    def __add__(self, other: Use) -> Use:
        return Use(self.clusters + other.clusters, self.replicas + other.replicas, self.gpus + other.gpus)


def max_replicas(spec: Mapping[str, Any]) -> int:
    """A cluster's ``capacity.max``, or ``desired`` when unset (1 by default, as the CRD defaults it)."""
    capacity = spec.get("capacity") or {}
    for field in ("max", "desired"):
        value = capacity.get(field)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return 1


def use_of(spec: Mapping[str, Any], gpus_per_replica: GpusPerReplica) -> Use:
    """What one cluster of this spec takes."""
    replicas = max_replicas(spec)
    return Use(clusters=1, replicas=replicas, gpus=replicas * gpus_per_replica(spec))


def merged_spec(current: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """``current`` with a merge patch's ``spec`` fields applied (capacity merged field by field)."""
    merged = dict(current)
    for key, value in (patch.get("spec") or {}).items():
        if key == "capacity" and isinstance(value, Mapping):
            merged["capacity"] = {**(current.get("capacity") or {}), **value}
        else:
            merged[key] = value
    return merged


def quota_refusal(
    tenant: Tenant | None,
    clusters: Iterable[Body],
    name: str,
    spec: Mapping[str, Any],
    gpus_per_replica: GpusPerReplica,
) -> str | None:
    """Why writing cluster ``name`` with ``spec`` would exceed ``tenant``'s quotas, else ``None``.

    ``clusters`` are the namespace's clusters as the gateway knows them; the one named ``name`` (when it
    exists) is replaced by ``spec``.
    """
    if tenant is None:
        return None
    quotas = tenant.spec.quotas
    others = Use()
    for cluster in clusters:
        if name_of(cluster) != name:
            others = others + use_of(cluster.get("spec") or {}, gpus_per_replica)
    wanted = use_of(spec, gpus_per_replica)
    total = others + wanted
    who = f"tenant {tenant.name}"
    if quotas.model_clusters is not None and total.clusters > quotas.model_clusters:
        return (
            f"quota exceeded: {who} may have {quotas.model_clusters} ModelClusters (quota modelClusters) "
            f"and has {others.clusters}"
        )
    if quotas.replicas is not None and total.replicas > quotas.replicas:
        return (
            f"quota exceeded: {who} may run {quotas.replicas} replicas in all (quota replicas, the sum of "
            f"capacity.max); its other clusters use {others.replicas} and this one asks for {wanted.replicas}"
        )
    if quotas.gpus is not None and total.gpus > quotas.gpus:
        return (
            f"quota exceeded: {who} may request {quotas.gpus} GPUs (quota gpus); its other clusters use "
            f"{others.gpus} and this one asks for {wanted.gpus} ({wanted.replicas} replicas of "
            f"{wanted.gpus // max(wanted.replicas, 1)} GPUs)"
        )
    return None
