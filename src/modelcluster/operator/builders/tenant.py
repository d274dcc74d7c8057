"""What a Tenant becomes: its namespace, its ResourceQuota, its LimitRange and its status, or the reason it is refused.

Pure: the reconcile (``operator/controller/tenants.py``) reads the Tenant, the namespace and what runs in
it, asks these functions, and writes what they return.

A Tenant is refused (status ``Ready=False`` with the reason, nothing written) when its namespace is a
system namespace (:func:`modelcluster.api.tenancy.tenant_refusal`, the operator's and the gateway's own
namespaces), when an older Tenant already has that namespace, or when the namespace exists, is not a
tenant namespace yet, and already runs workloads of someone else. An existing tenant namespace (labelled
``modelcluster.dev/tenant`` by ``modelcluster keys create`` or an earlier reconcile) is adopted, as is an
existing namespace that runs nothing.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from modelcluster.api import Condition, ConditionStatus
from modelcluster.api.labels import MANAGED_BY, MANAGER, PART_OF, PART_OF_NAME
from modelcluster.api.tenancy import tenant_labels, tenant_refusal
from modelcluster.api.tenant import (
    QUOTA_GPUS,
    QUOTA_MODEL_CLUSTERS,
    QUOTA_PODS,
    TENANT_API_VERSION,
    TENANT_KIND,
    Tenant,
    TenantStatus,
    TenantUsage,
)
from modelcluster.kube.objects import Body, metadata_of, parse_rfc3339

#: The one ResourceQuota the operator keeps in each tenant namespace.
QUOTA_NAME = "modelcluster-tenant"
#: The one LimitRange (the containers' default requests) the operator keeps in each tenant namespace.
LIMIT_RANGE_NAME = "modelcluster-tenant"
READY = "Ready"
#: Reasons of a refused Tenant.
SYSTEM_NAMESPACE = "SystemNamespace"
NAMESPACE_IN_USE = "NamespaceInUse"
NAMESPACE_TAKEN = "NamespaceTaken"
INVALID_SPEC = "InvalidSpec"
RECONCILED = "Reconciled"
QUOTA_PENDING = "QuotaPending"


@dataclass(frozen=True)
class Refusal:
    """Why a Tenant gets no namespace: a CamelCase reason and a message naming the namespace."""

    reason: str
    message: str


def parse_tenant(body: Mapping[str, Any]) -> Tenant | Refusal:
    """The Tenant, or an ``InvalidSpec`` refusal (the apiserver validates the same, so only an old object)."""
    try:
        return Tenant.from_k8s(dict(body))
    except ValidationError as error:
        first = error.errors()[0]
        location = ".".join(str(part) for part in first["loc"])
        return Refusal(INVALID_SPEC, f"{location}: {first['msg']}")


def namespace_refusal(tenant: Tenant, reserved: Collection[str]) -> Refusal | None:
    """Why ``tenant``'s namespace can never be a tenant's (a system namespace, one of ``reserved``)."""
    namespace = tenant.namespace
    if namespace in reserved:
        return Refusal(SYSTEM_NAMESPACE, f"namespace {namespace} is the modelcluster system's own namespace")
    why = tenant_refusal(namespace)
    if why is not None:
        return Refusal(SYSTEM_NAMESPACE, f"namespace {namespace} cannot be a tenant's: {why}")
    return None


def _age_order(body: Mapping[str, Any]) -> tuple[str, str]:
    """Oldest first: the API's creation times (RFC 3339, UTC, ``Z``) sort as text; none sorts last."""
    metadata = metadata_of(body)
    return str(metadata.get("creationTimestamp") or "~"), str(metadata.get("name") or "")


def claimed_by_another(tenant: Tenant, body: Mapping[str, Any], others: Iterable[Mapping[str, Any]]) -> Refusal | None:
    """An older Tenant (by creation time, then name) naming the same namespace keeps it; this one is refused."""
    mine = _age_order(body)
    for other in others:
        parsed = parse_tenant(other)
        if isinstance(parsed, Refusal) or parsed.name == tenant.name or parsed.namespace != tenant.namespace:
            continue
        if _age_order(other) < mine:
            return Refusal(NAMESPACE_TAKEN, f"namespace {tenant.namespace} belongs to Tenant {parsed.name}")
    return None


def in_use_refusal(namespace: str, foreign: Sequence[str]) -> Refusal | None:
    """A namespace that is not a tenant's yet and runs ``foreign`` workloads (``Kind/name``) is refused."""
    if not foreign:
        return None
    listed = ", ".join(foreign)
    return Refusal(
        NAMESPACE_IN_USE,
        f"namespace {namespace} already holds workloads that are not a tenant's ({listed}); "
        f"choose another namespace, or move them out and label it {next(iter(tenant_labels(namespace)))}",
    )


def owner_reference(body: Mapping[str, Any]) -> dict[str, Any]:
    """The Tenant as the controller owner of its ResourceQuota (garbage-collected with the Tenant)."""
    metadata = metadata_of(body)
    return {
        "apiVersion": TENANT_API_VERSION,
        "kind": TENANT_KIND,
        "name": str(metadata.get("name") or ""),
        "uid": str(metadata.get("uid") or ""),
        "controller": True,
        "blockOwnerDeletion": False,
    }


def namespace_body(tenant: Tenant) -> Body:
    """The tenant's namespace as the operator applies it: only the labels that make it a tenant namespace."""
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": tenant.namespace, "labels": {PART_OF: PART_OF_NAME, **tenant_labels(tenant.namespace)}},
    }


def quota_hard(tenant: Tenant) -> dict[str, str]:
    """The ResourceQuota's ``hard`` for the tenant's quotas (an unset quota is not listed)."""
    quotas = tenant.spec.quotas
    hard: dict[str, str] = {}
    for resource, value in (
        (QUOTA_MODEL_CLUSTERS, quotas.model_clusters),
        (QUOTA_GPUS, quotas.gpus),
        (QUOTA_PODS, quotas.pods),
    ):
        if value is not None:
            hard[resource] = str(value)
    return hard


def owned_metadata(name: str, tenant: Tenant, body: Mapping[str, Any]) -> Body:
    """The metadata of an object ``name`` in the tenant's namespace, made by the operator and owned by the Tenant."""
    return {
        "name": name,
        "namespace": tenant.namespace,
        "labels": {PART_OF: PART_OF_NAME, MANAGED_BY: MANAGER},
        "ownerReferences": [owner_reference(body)],
    }


def quota_body(tenant: Tenant, body: Mapping[str, Any], leave_out: Collection[str] = ()) -> Body:
    """The tenant's ResourceQuota, owned by the Tenant ``body`` (without the resources ``leave_out``)."""
    return {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": owned_metadata(QUOTA_NAME, tenant, body),
        "spec": {"hard": {key: value for key, value in quota_hard(tenant).items() if key not in leave_out}},
    }


def limit_range_body(tenant: Tenant, body: Mapping[str, Any]) -> Body:
    """The tenant's LimitRange, owned by the Tenant ``body``: the requests a container stating none gets
    (``spec.defaults.container``), so that a quota on requests counts pods made by hand too.

    Only default *requests*: a default limit would be added to containers that state a request and no limit,
    such as the operator's model pods (no CPU limit), and refuse those whose request is above it.
    """
    container = tenant.spec.effective_defaults.container
    return {
        "apiVersion": "v1",
        "kind": "LimitRange",
        "metadata": owned_metadata(LIMIT_RANGE_NAME, tenant, body),
        "spec": {
            "limits": [{"type": "Container", "defaultRequest": {"cpu": container.cpu, "memory": container.memory}}]
        },
    }


def _count(used: Mapping[str, Any], resource: str) -> int | None:
    value = used.get(resource)
    if value is None:
        return None
    try:
        return int(str(value))
    except ValueError:
        return None


def usage_of(quota: Mapping[str, Any] | None) -> TenantUsage | None:
    """What the ResourceQuota last counted (``status.used``), when it has counted."""
    used = ((quota or {}).get("status") or {}).get("used")
    if not isinstance(used, Mapping):
        return None
    return TenantUsage(
        model_clusters=_count(used, QUOTA_MODEL_CLUSTERS), gpus=_count(used, QUOTA_GPUS), pods=_count(used, QUOTA_PODS)
    )


def uncounted(quota: Mapping[str, Any] | None) -> list[str]:
    """The resources of the ResourceQuota's ``spec.hard`` its ``status.used`` lacks.

    The quota controller counts a custom resource (``count/modelclusters.modelcluster.dev``) only once it has
    discovered its CRD, and counts a ResourceQuota again only when its ``spec.hard`` changes (or at its full
    resync, every five minutes): a quota made within seconds of the CRD stays uncounted that long, and the
    apiserver refuses every ModelCluster meanwhile. Leaving those resources out of one apply and putting them
    back in the next (:func:`quota_body` with ``leave_out``) has the controller count them at once.
    """
    if quota is None:
        return []
    hard = (quota.get("spec") or {}).get("hard") or {}
    used = (quota.get("status") or {}).get("used") or {}
    return sorted(resource for resource in hard if resource not in used)


def quota_counted(quota: Mapping[str, Any] | None) -> bool:
    """Whether the quota controller has counted the ResourceQuota as it now is: ``status.hard`` is ``spec.hard``
    and ``status.used`` has every resource (a custom resource's count shows only once the controller monitors it;
    until then the apiserver refuses such objects with "status unknown for quota")."""
    if quota is None:
        return False
    hard = (quota.get("spec") or {}).get("hard") or {}
    status = quota.get("status") or {}
    used = status.get("used") or {}
    return (status.get("hard") or {}) == hard and all(resource in used for resource in hard)


def _ready(
    status: ConditionStatus, reason: str, message: str, generation: int, previous: Any, now: datetime
) -> Condition:
    old = next((c for c in previous or [] if isinstance(c, Mapping) and c.get("type") == READY), None)
    since: datetime | None = None
    if old is not None and old.get("status") == status.value and isinstance(old.get("lastTransitionTime"), str):
        since = parse_rfc3339(old["lastTransitionTime"])
    return Condition(
        type=READY,
        status=status,
        reason=reason,
        message=message,
        observed_generation=generation,
        last_transition_time=since or now,
    )


def tenant_status(
    body: Mapping[str, Any], now: datetime, *, refusal: Refusal | None = None, quota: Mapping[str, Any] | None = None
) -> TenantStatus:
    """The status to write: refused with the reason, or ready with the namespace and the quota's counts."""
    generation = int(metadata_of(body).get("generation") or 0)
    previous = (body.get("status") or {}).get("conditions")
    if refusal is not None:
        condition = _ready(ConditionStatus.FALSE, refusal.reason, refusal.message, generation, previous, now)
        return TenantStatus(observed_generation=generation, conditions=[condition])
    tenant = parse_tenant(body)
    assert isinstance(tenant, Tenant)
    if quota_counted(quota):
        message = f"namespace {tenant.namespace} and ResourceQuota {QUOTA_NAME} are in place"
        condition = _ready(ConditionStatus.TRUE, RECONCILED, message, generation, previous, now)
    else:
        # Until the quota controller has counted the namespace, the apiserver refuses every object the quota covers.
        message = f"waiting for the quota controller to count ResourceQuota {QUOTA_NAME} in {tenant.namespace}"
        condition = _ready(ConditionStatus.FALSE, QUOTA_PENDING, message, generation, previous, now)
    return TenantStatus(
        namespace=tenant.namespace, used=usage_of(quota), observed_generation=generation, conditions=[condition]
    )
