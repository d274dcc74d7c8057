"""Cluster CRUD of the HTTP API as pure mappings between request bodies and ModelCluster objects."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError

from modelcluster.api import API_VERSION, KIND, ClusterPhase, InputError, ModelClusterSpec
from modelcluster.api.errors import Conflict
from modelcluster.api.field_managers import GATEWAY
from modelcluster.api.inference import summarize_validation_error
from modelcluster.api.labels import MODEL
from modelcluster.api.modelcluster import MAX_REPLICAS, MAX_TIMEOUT_SECONDS, TASK_PATTERN, WAKE_ANNOTATION
from modelcluster.api.naming import model_label_value, object_name, object_names
from modelcluster.kube.objects import Body, ClusterKey, metadata_of, rfc3339_micro

CREATED_BY_LABEL = "modelcluster.dev/created-by"


class CapacityPatch(BaseModel):
    """Capacity fields to change; the ones left out keep their values."""

    model_config = ConfigDict(extra="forbid")

    min: StrictInt | None = Field(default=None, ge=0, le=MAX_REPLICAS)
    desired: StrictInt | None = Field(default=None, ge=0, le=MAX_REPLICAS)
    max: StrictInt | None = Field(default=None, ge=0, le=MAX_REPLICAS)


class ClusterBody(BaseModel):
    """``PUT`` and ``PATCH /models/v2/{modelId}``: capacity, idle timeout (seconds) and, for unknown models, a task."""

    model_config = ConfigDict(extra="forbid")

    capacity: CapacityPatch | None = None
    timeout: StrictInt | None = Field(
        default=None, ge=1, le=MAX_TIMEOUT_SECONDS, description="Idle seconds before `min`."
    )
    task: str | None = Field(
        default=None, max_length=63, pattern=TASK_PATTERN, description="Needed for unknown models."
    )


def parse_cluster_body(raw: bytes, *, allow_empty: bool) -> ClusterBody:
    if not raw.strip():
        if allow_empty:
            return ClusterBody()
        raise InputError("the body is empty; send capacity and/or timeout")
    try:
        return ClusterBody.model_validate_json(raw)
    except ValidationError as exc:
        raise InputError(f"invalid body: {summarize_validation_error(exc)}") from exc


def _spec_fields(body: ClusterBody) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if body.capacity is not None:
        fields["capacity"] = body.capacity.model_dump(exclude_none=True)
    if body.timeout is not None:
        fields["timeout"] = body.timeout
    if body.task is not None:
        fields["task"] = body.task
    return fields


def served_model(cluster: Body) -> str | None:
    """The exact model id a ModelCluster serves (``spec.model``)."""
    model = (cluster.get("spec") or {}).get("model")
    return model if isinstance(model, str) else None


def find_cluster(
    namespace: str, model_id: str, get: Callable[[ClusterKey], Body | None]
) -> tuple[ClusterKey, Body | None]:
    """The key and the ModelCluster of ``model_id`` in ``namespace`` (None when it has none yet).

    The cluster is looked for under the model's name, then under its legacy 8-digit name, which counts only
    when its ``spec.model`` is exactly ``model_id``; with neither, the key is the name a new cluster gets.
    A cluster under the model's name that serves another id (a name collision, or one made by hand) is a
    :class:`Conflict`: the request must neither reach nor wake another model.
    """
    name, legacy = object_names(model_id)
    key = (namespace, name)
    found = get(key)
    if found is not None:
        served = served_model(found)
        if served != model_id:
            raise Conflict(f"the cluster {name} serves {served}, not {model_id}")
        return key, found
    old = get((namespace, legacy))
    if old is not None and served_model(old) == model_id:
        return (namespace, legacy), old
    return key, None


def build_cluster(namespace: str, model_id: str, body: ClusterBody) -> dict[str, Any]:
    """The ModelCluster a ``PUT`` (or a first request) creates; checked like the apiserver would."""
    spec = {"model": model_id, **_spec_fields(body)}
    try:
        ModelClusterSpec.model_validate(spec)
    except ValidationError as exc:
        raise InputError(f"invalid body: {summarize_validation_error(exc)}") from exc
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {
            "name": object_name(model_id),
            "namespace": namespace,
            "labels": {MODEL: model_label_value(model_id), CREATED_BY_LABEL: GATEWAY},
        },
        "spec": spec,
    }


def build_patch(body: ClusterBody, current_task: str | None = None) -> dict[str, Any]:
    """The merge patch of a ``PATCH``; the apiserver checks the merged object. The current task may be repeated."""
    fields = _spec_fields(body)
    if fields.get("task") == current_task:
        fields.pop("task", None)
    if "task" in fields:
        raise InputError("task cannot be changed; delete the cluster and create it again")
    if not fields:
        raise InputError("nothing to change; send capacity and/or timeout")
    return {"spec": fields}


def wake_patch(now: datetime) -> dict[str, Any]:
    """The annotation that asks the operator to bring a stopped cluster back at once."""
    return {"metadata": {"annotations": {WAKE_ANNOTATION: rfc3339_micro(now)}}}


def _later(a: str | None, b: str | None) -> str | None:
    if a is None or b is None:
        return a or b
    return max(a, b)


def cluster_view(obj: dict[str, Any], last_request: str | None = None, task: str | None = None) -> dict[str, Any]:
    """What ``GET /models/v2/{modelId}`` and ``/list/clusters`` show of a ModelCluster.

    ``task`` is the gateway's own resolution, shown until the operator has written its status.
    """
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    metadata = metadata_of(obj)
    capacity = dict(spec.get("capacity") or {})
    capacity.setdefault("max", capacity.get("desired"))
    return {
        "modelId": spec.get("model"),
        "task": status.get("task") or spec.get("task") or task,
        "status": status.get("status") or ClusterPhase.DEPLOYING.value,
        "reason": status.get("reason"),
        "message": status.get("message"),
        "capacity": capacity,
        "timeout": spec.get("timeout"),
        "replicas": status.get("replicas", 0),
        "readyReplicas": status.get("readyReplicas", 0),
        "lastRequestTime": _later(status.get("lastRequestTime"), last_request),
        "created": metadata.get("creationTimestamp"),
    }
