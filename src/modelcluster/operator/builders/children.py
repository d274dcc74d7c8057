"""When a child object must be applied again: missing, changed in what we want, or changed by someone else.

Each applied child carries the hash of the body the operator applied, so a reconcile whose
desired body is unchanged writes nothing. Drift (``kubectl edit``, another controller) shows in
the child's ``managedFields``: a change to a field the operator owns moves that field to the
other manager, so the operator's own field set shrinks. The operator remembers its field set
as the apiserver returned it after its last apply and re-applies when the live one differs.
``spec.replicas`` is left out of that comparison: the operator owns it from the create of a Deployment
until the autoscaler's first forced apply takes it over, and that hand-over is no drift.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from modelcluster.api import GROUP
from modelcluster.kube.objects import metadata_of

SPEC_HASH_ANNOTATION = f"{GROUP}/spec-hash"

Body = dict[str, Any]


class ApplyReason(StrEnum):
    """Why a child is applied."""

    MISSING = "Missing"
    CHANGED = "Changed"
    DRIFTED = "Drifted"


def body_hash(desired: Mapping[str, Any]) -> str:
    """A short, stable hash of a body (key order does not matter)."""
    canonical = json.dumps(desired, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def with_spec_hash(desired: Mapping[str, Any]) -> Body:
    """``desired`` with the hash of itself in its annotations."""
    stamped: Body = json.loads(json.dumps(desired))
    metadata = stamped.setdefault("metadata", {})
    annotations = dict(metadata.get("annotations") or {})
    annotations.pop(SPEC_HASH_ANNOTATION, None)
    metadata["annotations"] = annotations
    digest = body_hash(stamped)
    annotations[SPEC_HASH_ANNOTATION] = digest
    return stamped


def spec_hash(obj: Mapping[str, Any] | None) -> str | None:
    annotations = ((obj or {}).get("metadata") or {}).get("annotations") or {}
    value = annotations.get(SPEC_HASH_ANNOTATION)
    return str(value) if value else None


#: The replica count in ``fieldsV1``: handed from the operator to the autoscaler, never drift.
SPEC_FIELD, REPLICAS_FIELD = "f:spec", "f:replicas"


def applied_fields(obj: Mapping[str, Any] | None, manager: str) -> Mapping[str, Any] | None:
    """The ``fieldsV1`` that ``manager`` applied on ``obj`` (its main resource, not the status); None if it did not."""
    for entry in ((obj or {}).get("metadata") or {}).get("managedFields") or []:
        if entry.get("manager") == manager and entry.get("operation") == "Apply" and not entry.get("subresource"):
            fields = entry.get("fieldsV1")
            return fields if isinstance(fields, Mapping) else {}
    return None


def owns_replicas(obj: Mapping[str, Any] | None, manager: str) -> bool:
    """Whether ``manager``'s apply owns ``spec.replicas`` of ``obj`` (so an apply without it would drop it)."""
    spec = (applied_fields(obj, manager) or {}).get(SPEC_FIELD)
    return isinstance(spec, Mapping) and REPLICAS_FIELD in spec


def owned_fields(obj: Mapping[str, Any] | None, manager: str) -> str | None:
    """The field set ``manager`` applied on ``obj``, less ``spec.replicas``, as canonical JSON (drift is judged
    on it)."""
    fields = applied_fields(obj, manager)
    if fields is None:
        return None
    spec = fields.get(SPEC_FIELD)
    if isinstance(spec, Mapping) and REPLICAS_FIELD in spec:
        fields = {**fields, SPEC_FIELD: {key: value for key, value in spec.items() if key != REPLICAS_FIELD}}
    return json.dumps(fields, sort_keys=True, separators=(",", ":"))


def apply_reason(
    live: Mapping[str, Any] | None, desired: Mapping[str, Any], manager: str, remembered: str | None
) -> ApplyReason | None:
    """Why ``desired`` (stamped by :func:`with_spec_hash`) must be applied over ``live``; None when it need not be.

    ``remembered`` is the manager's field set after its last apply (None when not known, e.g. after a restart:
    then only a missing or changed child is applied).
    """
    if live is None:
        return ApplyReason.MISSING
    if metadata_of(live).get("deletionTimestamp"):
        return None  # applied again once its deletion is seen through
    if spec_hash(live) != spec_hash(desired):
        return ApplyReason.CHANGED
    if remembered is not None and owned_fields(live, manager) != remembered:
        return ApplyReason.DRIFTED
    return None
