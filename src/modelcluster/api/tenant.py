"""The Tenant custom resource: a team's namespace, its quotas and its budget.

Cluster-scoped, in the same API group as ModelCluster. The operator reconciles each Tenant into its
namespace (labelled :data:`modelcluster.api.labels.TENANT`), a ResourceQuota and the Tenant's status;
the gateway reads Tenants to refuse a cluster write past a quota before the apiserver would.

As for ModelCluster, validation lives in the pydantic models below and in the CEL rules attached to
the schema (``x-kubernetes-validations``), which the CRD generator copies verbatim.
"""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, JsonValue, WithJsonSchema, field_serializer
from pydantic.alias_generators import to_camel

from modelcluster.api.modelcluster import GROUP, MAX_TIMEOUT_SECONDS, VERSION, Capacity, Condition

TENANT_KIND = "Tenant"
TENANT_PLURAL = "tenants"
TENANT_SINGULAR = "tenant"
TENANT_API_VERSION = f"{GROUP}/{VERSION}"

#: A namespace name: a DNS-1123 label.
NAMESPACE_PATTERN = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
#: The largest count any quota takes (ModelClusters, replicas, GPUs, pods).
MAX_QUOTA = 1_000_000
#: The largest budget, in USD.
MAX_BUDGET = 1_000_000_000

#: The ResourceQuota resource names a Tenant's quotas become.
QUOTA_MODEL_CLUSTERS = f"count/modelclusters.{GROUP}"
QUOTA_GPUS = "requests.nvidia.com/gpu"
QUOTA_PODS = "pods"

#: A CPU or memory amount as a LimitRange takes it: a positive decimal with an optional unit (``500m``, ``2Gi``).
QUANTITY_PATTERN = r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|Ki|Mi|Gi|Ti)?$"
#: What a container of a tenant namespace requests when it states nothing (the LimitRange's defaults).
DEFAULT_CONTAINER_CPU = "100m"
DEFAULT_CONTAINER_MEMORY = "128Mi"


def _cel(rule: str, message: str) -> dict[str, JsonValue]:
    return {"rule": rule, "message": message}


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


def _quota(description: str) -> Any:
    return Field(default=None, ge=0, le=MAX_QUOTA, description=description)


class TenantQuotas(_Model):
    """Upper bounds on what the tenant runs; an unset quota is unbounded."""

    model_clusters: int | None = _quota(
        "ModelClusters in the namespace (ResourceQuota `count/modelclusters.modelcluster.dev`)."
    )
    replicas: int | None = _quota(
        "Total replicas: the sum of the clusters' `capacity.max` (checked by the gateway on every write)."
    )
    gpus: int | None = _quota("GPUs the namespace's pods may request (ResourceQuota `requests.nvidia.com/gpu`).")
    pods: int | None = _quota("Pods in the namespace, rollout surges included (ResourceQuota `pods`).")


class BudgetPeriod(StrEnum):
    """The period a budget covers; spend resets at its start (UTC)."""

    DAY = "day"
    WEEK = "week"
    MONTH = "month"


class TenantBudget(_Model):
    """How much the tenant may spend per period; inference answers 402 once the period's spend reaches it."""

    amount: Annotated[Decimal, WithJsonSchema({"type": "number", "minimum": 0, "maximum": MAX_BUDGET})] = Field(
        ge=0, le=MAX_BUDGET, description="The spend allowed per period, in USD (a non-negative number)."
    )
    period: BudgetPeriod = Field(description="`day`, `week` or `month` (UTC; weeks start on Monday).")

    @field_serializer("amount")
    def _amount_number(self, amount: Decimal) -> int | float:
        # Kubernetes stores the amount as a JSON number; whole amounts stay integers.
        return int(amount) if amount == amount.to_integral_value() else float(amount)


def _quantity(default: str, what: str) -> Any:
    return Field(
        default=default,
        min_length=1,
        max_length=32,
        pattern=QUANTITY_PATTERN,
        description=f"{what} requested by a container that states none (default `{default}`).",
    )


class ContainerDefaults(_Model):
    """What a container of the namespace requests when it states no request: the namespace's LimitRange, so that
    pods made by hand are counted by a quota on requests. The operator's model pods always state theirs."""

    cpu: str = _quantity(DEFAULT_CONTAINER_CPU, "CPU")
    memory: str = _quantity(DEFAULT_CONTAINER_MEMORY, "Memory")


class TenantDefaults(_Model):
    """What the tenant's clusters get when they are created through the gateway (a `PUT` or a first request)
    without stating it; a cluster made with kubectl gets the ModelCluster CRD's own defaults."""

    capacity: Capacity | None = Field(
        default=None,
        description="The capacity of a cluster created without one (else the CRD's `{min: 0, desired: 1}`).",
    )
    timeout: int | None = Field(
        default=None,
        ge=1,
        le=MAX_TIMEOUT_SECONDS,
        description="The idle timeout, in seconds, of a cluster created without one (else the CRD's 300).",
    )
    container: ContainerDefaults = Field(default_factory=ContainerDefaults, description=ContainerDefaults.__doc__)


class TenantSpec(_Model):
    """A tenant: its namespace, its quotas and an optional budget."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    "has(self.namespace) == has(oldSelf.namespace)",
                    "namespace is immutable; create another Tenant for another namespace",
                )
            ]
        }
    )

    namespace: str | None = Field(
        default=None,
        min_length=1,
        max_length=63,
        pattern=NAMESPACE_PATTERN,
        description="The tenant's namespace (default: the Tenant's name). Immutable. Never a system namespace.",
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel("self == oldSelf", "namespace is immutable; create another Tenant for another namespace")
            ]
        },
    )
    quotas: TenantQuotas = Field(default_factory=TenantQuotas, description=TenantQuotas.__doc__)
    budget: TenantBudget | None = Field(default=None, description=TenantBudget.__doc__)
    defaults: TenantDefaults | None = Field(default=None, description=TenantDefaults.__doc__)

    @property
    def effective_defaults(self) -> TenantDefaults:
        """``defaults``, or the defaults of an empty ``defaults`` when unset."""
        return self.defaults or TenantDefaults()


class TenantUsage(_Model):
    """What the namespace uses, as the ResourceQuota last counted it."""

    model_clusters: int | None = Field(default=None, ge=0, description="ModelClusters in the namespace.")
    gpus: int | None = Field(default=None, ge=0, description="GPUs requested by the namespace's pods.")
    pods: int | None = Field(default=None, ge=0, description="Pods in the namespace.")


class TenantStatus(_Model):
    """What the operator observed. Written only by the operator (status subresource)."""

    namespace: str | None = Field(default=None, description="The namespace reconciled for the tenant.")
    used: TenantUsage | None = Field(default=None, description=TenantUsage.__doc__)
    observed_generation: int | None = Field(
        default=None, ge=0, description="The `metadata.generation` this status was derived from."
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        description="`Ready`: `True` once the namespace and the ResourceQuota are in place; `False` with the "
        "reason when the tenant is refused (`SystemNamespace`, `NamespaceInUse`).",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )

    def to_k8s(self) -> dict[str, Any]:
        """The JSON form written to ``status`` (camelCase, no nulls)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class Tenant(_Model):
    """A whole Tenant object as read from the apiserver (the fields the processes use)."""

    name: str = Field(description="`metadata.name`: the tenant's name.")
    spec: TenantSpec = Field(default_factory=TenantSpec)
    status: TenantStatus | None = None

    @property
    def namespace(self) -> str:
        """The tenant's namespace: ``spec.namespace``, else the Tenant's name."""
        return self.spec.namespace or self.name

    @classmethod
    def from_k8s(cls, body: dict[str, Any]) -> Tenant:
        """Parse a Tenant object (plain JSON); raises ``pydantic.ValidationError`` on a malformed one."""
        metadata = body.get("metadata") or {}
        return cls.model_validate(
            {"name": metadata.get("name", ""), "spec": body.get("spec") or {}, "status": body.get("status")}
        )


def tenant_body(name: str, spec: TenantSpec) -> dict[str, Any]:
    """A Tenant object to create or apply."""
    return {
        "apiVersion": TENANT_API_VERSION,
        "kind": TENANT_KIND,
        "metadata": {"name": name},
        "spec": spec.model_dump(mode="json", by_alias=True, exclude_none=True),
    }
