"""Whether an object named like a child of a ModelCluster is that cluster's own.

The operator writes children with a forced server-side apply, which would rewrite any object of
the same name and add the cluster's ownerReference to it: deleting the cluster would then
garbage-collect it. So before the first apply of a child (one the store does not have as the
cluster's own) the live object is judged here, and an object the cluster did not create is never
applied: the cluster fails with :data:`~modelcluster.operator.builders.status.NAME_CONFLICT`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any

from modelcluster.api.labels import MANAGED_BY, MANAGER
from modelcluster.kube.objects import labels_of, metadata_of
from modelcluster.operator.builders.status import NAME_CONFLICT, Problem
from modelcluster.operator.builders.workload import Owner

#: Seconds before a cluster with a name conflict looks again: a foreign object that carries no
#: managed-by label is not watched, so its deletion wakes no reconcile.
NAME_CONFLICT_RECHECK_SECONDS = 15.0


class Ownership(StrEnum):
    """What stands under a child's name."""

    ABSENT = "Absent"
    OURS = "Ours"
    FOREIGN = "Foreign"


def controller_uid(obj: Mapping[str, Any]) -> str | None:
    """The uid of the object's controller (its ownerReference with ``controller: true``), if any."""
    for reference in metadata_of(obj).get("ownerReferences") or []:
        if isinstance(reference, Mapping) and reference.get("controller") is True:
            uid = reference.get("uid")
            return str(uid) if uid else None
    return None


def ownership(live: Mapping[str, Any] | None, owner: Owner) -> Ownership:
    """Whether ``live`` (the object under a child's name, None when there is none) belongs to ``owner``.

    Ours means both: the operator's managed-by label, and a controller ownerReference to this very
    ModelCluster (its uid, so neither a namesake created earlier nor a copied reference to another
    cluster counts).
    """
    if live is None:
        return Ownership.ABSENT
    if labels_of(live).get(MANAGED_BY) != MANAGER:
        return Ownership.FOREIGN
    if not owner.uid or controller_uid(live) != owner.uid:
        return Ownership.FOREIGN
    return Ownership.OURS


def owns(cluster: Mapping[str, Any], child: Mapping[str, Any] | None) -> bool:
    """Whether ``child`` (as the store has it) belongs to ``cluster`` (a ModelCluster as the API returns it)."""
    metadata = metadata_of(cluster)
    name, namespace, uid = (str(metadata.get(key) or "") for key in ("name", "namespace", "uid"))
    owner = Owner(name=name, namespace=namespace, uid=uid)
    return ownership(child, owner) is Ownership.OURS


def conflict_message(kind: str, namespace: str, name: str) -> str:
    return f"{kind} {namespace}/{name} exists and is not managed by this ModelCluster"


def name_conflict(kind: str, live: Mapping[str, Any] | None, owner: Owner) -> Problem | None:
    """The problem of a foreign ``live`` standing under the name of ``owner``'s ``kind`` child; None otherwise."""
    if live is None or ownership(live, owner) is not Ownership.FOREIGN:
        return None
    metadata = metadata_of(live)
    namespace = str(metadata.get("namespace") or owner.namespace)
    return Problem(
        NAME_CONFLICT,
        conflict_message(kind, namespace, str(metadata.get("name"))),
        recheck_after=NAME_CONFLICT_RECHECK_SECONDS,
    )


def name_conflicts(problems: Sequence[Problem]) -> Problem | None:
    """Several conflicts of one cluster as one problem (their messages joined), None for none."""
    if not problems:
        return None
    if len(problems) == 1:
        return problems[0]
    recheck = min((p.recheck_after for p in problems if p.recheck_after is not None), default=None)
    return Problem(NAME_CONFLICT, "; ".join(p.message for p in problems), recheck_after=recheck)
