"""Which namespaces may be tenants: the rule lives in :mod:`modelcluster.api.tenancy` (the operator reconciling
Tenants asks it too); the gateway and ``modelcluster keys`` import it from here."""

from __future__ import annotations

from modelcluster.api.tenancy import (
    DEFAULT_KEY_NAMESPACE,
    RESERVED_NAMESPACES,
    RESERVED_PREFIXES,
    RESERVED_SUFFIXES,
    TENANT_LABEL,
    is_tenant_namespace,
    name_refusal,
    tenant_labels,
    tenant_refusal,
)

__all__ = [
    "DEFAULT_KEY_NAMESPACE",
    "RESERVED_NAMESPACES",
    "RESERVED_PREFIXES",
    "RESERVED_SUFFIXES",
    "TENANT_LABEL",
    "is_tenant_namespace",
    "name_refusal",
    "tenant_labels",
    "tenant_refusal",
]
