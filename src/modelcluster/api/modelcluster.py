"""The ModelCluster custom resource: spec and status.

Validation lives in two places that must agree: the pydantic validators below
(used by the operator and the gateway) and the CEL rules attached to the schema
with ``x-kubernetes-validations`` (enforced by the apiserver). The CRD generator
copies the rules verbatim from these models.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, field_validator, model_validator
from pydantic.alias_generators import to_camel

GROUP = "modelcluster.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "ModelCluster"
PLURAL = "modelclusters"
SINGULAR = "modelcluster"
SHORT_NAMES = ("mc",)

#: ``org/name``: each part starts and ends with a letter or digit; ``..`` never occurs
#: (the hub forbids it too), which keeps the label encoding of ids reversible.
MODEL_ID_PATTERN = r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?/[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$"
MODEL_ID_MAX_LENGTH = 200
TASK_PATTERN = r"^[a-z0-9]+(-[a-z0-9]+)*$"
MAX_REPLICAS = 1000
DEFAULT_TIMEOUT_SECONDS = 300
#: Written by the gateway when a request finds a cluster at zero replicas: the operator then runs
#: ``max(capacity.desired, 1)`` replicas for ``spec.timeout`` seconds from this time. (Not under
#: ``modelcluster.dev/``: the operator's kopf keeps its own state there and ignores changes to it.)
WAKE_ANNOTATION = "autoscaling.modelcluster.dev/wake-requested-at"
MAX_TIMEOUT_SECONDS = 7 * 24 * 3600
#: A DNS-1123 subdomain: names of Secrets and PersistentVolumeClaims.
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
#: A Kubernetes quantity as storage sizes are written (``100Gi``, ``500G``).
QUANTITY_PATTERN = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$"
SECRET_KEY_PATTERN = r"^[-._a-zA-Z0-9]+$"

_MODEL_ID_RE = re.compile(MODEL_ID_PATTERN)


def is_model_id(value: str) -> bool:
    """Whether ``value`` is shaped like the ids the apiserver admits (``org/name``)."""
    return len(value) <= MODEL_ID_MAX_LENGTH and ".." not in value and _MODEL_ID_RE.match(value) is not None


def _cel(rule: str, message: str, field_path: str | None = None) -> dict[str, JsonValue]:
    validation: dict[str, JsonValue] = {"rule": rule, "message": message}
    if field_path is not None:
        validation["fieldPath"] = field_path
    return validation


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class Capacity(_Model):
    """How many replicas the cluster runs: between desired and max while active, min when idle."""

    model_config = ConfigDict(
        json_schema_extra={
            # Spelled out: the apiserver checks the rules below against this default as written.
            "default": {"min": 0, "desired": 1},
            "x-kubernetes-validations": [
                _cel("self.min <= self.desired", "capacity.min must be less than or equal to capacity.desired", ".min"),
                _cel(
                    "!has(self.max) || self.desired <= self.max",
                    "capacity.desired must be less than or equal to capacity.max",
                    ".desired",
                ),
                _cel("!has(self.max) || self.max >= 1", "capacity.max must be at least 1", ".max"),
                _cel(
                    "has(self.max) || self.desired >= 1",
                    "capacity.desired must be at least 1 when capacity.max is unset (max defaults to desired)",
                    ".desired",
                ),
            ],
        }
    )

    min: int = Field(
        default=0,
        ge=0,
        le=MAX_REPLICAS,
        description="Replicas kept after `timeout` idle seconds. 0 tears the cluster down (status `stopped`).",
    )
    desired: int = Field(
        default=1,
        ge=0,
        le=MAX_REPLICAS,
        description="Replicas while the cluster is active; a request wakes an idle cluster back to this count.",
    )
    max: int | None = Field(
        default=None,
        ge=0,
        le=MAX_REPLICAS,
        description="Upper bound for scaling on queue depth. Defaults to `desired` when unset.",
    )

    @model_validator(mode="after")
    def _ordered(self) -> Capacity:
        if self.min > self.desired:
            raise ValueError("capacity.min must be less than or equal to capacity.desired")
        if self.max is not None and self.desired > self.max:
            raise ValueError("capacity.desired must be less than or equal to capacity.max")
        if self.effective_max < 1:
            raise ValueError("capacity.max must be at least 1")
        return self

    @property
    def effective_max(self) -> int:
        """``max``, or ``desired`` when ``max`` is unset."""
        return self.desired if self.max is None else self.max


class SecretKeySelector(_Model):
    """A key of a Secret in the ModelCluster's namespace."""

    name: str = Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN_PATTERN, description="The Secret's name.")
    key: str = Field(
        default="token", min_length=1, max_length=253, pattern=SECRET_KEY_PATTERN, description="The key in the Secret."
    )


class LocalObjectReference(_Model):
    """An object in the ModelCluster's namespace, by name."""

    name: str = Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN_PATTERN, description="The object's name.")


class ModelCache(_Model):
    """A persistent model cache mounted at the runtime's cache directory, so a restarted pod does not download
    the weights again. Either `size` (a PersistentVolumeClaim per cluster, created and owned by the operator)
    or `claimName` (an existing claim, e.g. one ReadWriteMany claim shared by many clusters)."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    "has(self.claimName) != has(self.size)",
                    "cache needs exactly one of claimName (an existing claim) or size (a claim per cluster)",
                ),
                _cel(
                    "!has(self.claimName) || (!has(self.storageClassName) && !has(self.accessMode))",
                    "cache.storageClassName and cache.accessMode apply only to a claim created for the cluster (size)",
                ),
            ]
        }
    )

    claim_name: str | None = Field(
        default=None,
        min_length=1,
        max_length=253,
        pattern=DNS_SUBDOMAIN_PATTERN,
        description="An existing PersistentVolumeClaim in the namespace (ReadWriteMany when pods share it).",
    )
    size: str | None = Field(
        default=None,
        max_length=64,
        pattern=QUANTITY_PATTERN,
        description="Size of a claim created for this cluster (owned by it, deleted with it), e.g. `100Gi`.",
    )
    storage_class_name: str | None = Field(
        default=None,
        min_length=1,
        max_length=253,
        pattern=DNS_SUBDOMAIN_PATTERN,
        description="Storage class of the created claim (default: the cluster's default class).",
    )
    access_mode: Literal["ReadWriteOnce", "ReadWriteMany", "ReadWriteOncePod"] | None = Field(
        default=None,
        description="Access mode of the created claim (default ReadWriteOnce; replicas on several nodes need "
        "ReadWriteMany).",
    )

    @model_validator(mode="after")
    def _one_source(self) -> ModelCache:
        if (self.claim_name is None) == (self.size is None):
            raise ValueError("cache needs exactly one of claimName (an existing claim) or size (a claim per cluster)")
        if self.claim_name is not None and (self.storage_class_name is not None or self.access_mode is not None):
            raise ValueError(
                "cache.storageClassName and cache.accessMode apply only to a claim created for the cluster"
            )
        return self


class Rollout(_Model):
    """How the Deployment replaces pods on a template change (an upgrade, an image bump)."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    "self.maxSurge + self.maxUnavailable >= 1",
                    "rollout.maxSurge and rollout.maxUnavailable cannot both be 0",
                )
            ]
        }
    )

    max_surge: int = Field(
        default=1, ge=0, le=MAX_REPLICAS, description="Extra pods (and GPUs) a rollout may start above the count."
    )
    max_unavailable: int = Field(
        default=0,
        ge=0,
        le=MAX_REPLICAS,
        description="Pods a rollout may take down before their replacements are ready (1 with maxSurge 0 "
        "where GPUs are scarce: no extra GPU, but a one-replica cluster is down during the rollout).",
    )

    @model_validator(mode="after")
    def _progresses(self) -> Rollout:
        if self.max_surge + self.max_unavailable < 1:
            raise ValueError("rollout.maxSurge and rollout.maxUnavailable cannot both be 0")
        return self


class ModelClusterSpec(_Model):
    """What to run: a model, its task, how many replicas, and when to scale down."""

    model: str = Field(
        min_length=3,
        max_length=MODEL_ID_MAX_LENGTH,
        description="The model id, shaped `org/name` (for example `openai-community/gpt2`). Immutable.",
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel("self == oldSelf", "model is immutable; create another ModelCluster for another model"),
                _cel(
                    f"self.matches('{MODEL_ID_PATTERN}') && !self.contains('..')",
                    "model must be shaped org/name: letters, digits, '.', '_' or '-', each part starting and "
                    "ending with a letter or digit",
                ),
            ]
        },
    )
    task: str | None = Field(
        default=None,
        max_length=63,
        pattern=TASK_PATTERN,
        description="The ML task (for example `text-generation`). Required for models the catalog does not know.",
    )
    capacity: Capacity = Field(default_factory=Capacity, description=Capacity.__doc__)
    timeout: int = Field(
        default=DEFAULT_TIMEOUT_SECONDS,
        ge=1,
        le=MAX_TIMEOUT_SECONDS,
        description="Seconds without a request before the cluster drops to `capacity.min`.",
    )
    target_per_replica: float | None = Field(
        default=None,
        gt=0,
        le=10000,
        description="Outstanding requests one replica should carry before the cluster scales up "
        "(default by task family: 1 for LLMs, 8 for text models).",
    )

    token_secret: SecretKeySelector | None = Field(
        default=None,
        description="A Secret key holding a hub token (gated or private models); the runtime gets it as `HF_TOKEN`.",
    )
    image_pull_secrets: list[LocalObjectReference] | None = Field(
        default=None, max_length=16, description="Secrets for pulling the runtime image from a private registry."
    )
    cache: ModelCache | None = Field(
        default=None, description="A persistent model cache (default: a pod-local emptyDir, downloaded per pod)."
    )
    rollout: Rollout | None = Field(
        default=None, description="Rollout strategy (default maxSurge 1, maxUnavailable 0: no outage)."
    )

    @field_validator("model")
    @classmethod
    def _model_shape(cls, value: str) -> str:
        if not is_model_id(value):
            raise ValueError(f"model must be shaped org/name, got {value!r}")
        return value


class ClusterPhase(StrEnum):
    """The word the HTTP API returns for a cluster."""

    DEPLOYING = "deploying"
    RUNNING = "running"
    STOPPED = "stopped"
    FAILED = "failed"


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(_Model):
    """One observation about the cluster, in the shape of Kubernetes' metav1.Condition."""

    type: str = Field(max_length=316, description="The aspect observed: `Ready` or `Degraded`.")
    status: ConditionStatus = Field(description="`True`, `False` or `Unknown`.")
    reason: str = Field(max_length=1024, description="A CamelCase word for the cause.")
    message: str = Field(default="", max_length=32768, description="A human-readable explanation.")
    observed_generation: int | None = Field(
        default=None, ge=0, description="The `metadata.generation` this condition was derived from."
    )
    last_transition_time: datetime | None = Field(default=None, description="When `status` last changed.")


class BorrowedPod(_Model):
    """A warm standby pod serving the cluster until its own pod is ready: where the gateway sends its requests."""

    name: str = Field(max_length=253, description="The pod's name (in the cluster's namespace).")
    address: str = Field(max_length=45, description="The pod's IP address.")
    port: int = Field(ge=1, le=65535, description="The runtime's port.")


class ModelClusterStatus(_Model):
    """What the operator observed. Written only by the operator (status subresource)."""

    status: ClusterPhase | None = Field(default=None, description="`deploying`, `running`, `stopped` or `failed`.")
    reason: str | None = Field(default=None, description="Why the cluster is in this status (CamelCase).")
    message: str | None = Field(default=None, description="A human-readable explanation of `reason`.")
    task: str | None = Field(default=None, description="The task the cluster serves (from the spec or the catalog).")
    replicas: int | None = Field(default=None, ge=0, description="Pods of the cluster's Deployment.")
    ready_replicas: int | None = Field(default=None, ge=0, description="Pods that pass their readiness probe.")
    target_replicas: int | None = Field(default=None, ge=0, description="Replicas the operator asked for.")
    queue_depth: int | None = Field(default=None, ge=0, description="Outstanding requests, as last observed.")
    last_request_time: datetime | None = Field(
        default=None, description="The last request's arrival or completion: the idle clock starts here."
    )
    last_scale_time: datetime | None = Field(default=None, description="When the autoscaler last changed replicas.")
    endpoint: str | None = Field(default=None, description="In-cluster URL of the cluster's Service.")
    selector: str | None = Field(default=None, description="Label selector of the pods (scale subresource).")
    observed_generation: int | None = Field(
        default=None, ge=0, description="The `metadata.generation` this status was derived from."
    )
    borrowed_pod: BorrowedPod | None = Field(
        default=None,
        description="The warm standby serving the cluster's woken requests until its own pod is ready, if any.",
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        description="`Ready` and `Degraded`, each with reason, message and observedGeneration.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )

    def to_k8s(self) -> dict[str, Any]:
        """The JSON form written to ``status`` (camelCase, no nulls)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)
