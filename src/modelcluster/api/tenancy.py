"""Which namespaces may be tenants: one pure rule, used by `modelcluster keys`, the gateway and the operator.

A tenant is a namespace made for one: it carries the label :data:`TENANT_LABEL` with its own name
(``modelcluster keys create`` sets it). System and platform namespaces are never tenants, whatever
their labels: :func:`tenant_refusal` says why a name is refused, and both the CLI (before it creates
or labels anything) and the gateway (for every key Secret it loads) ask it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from modelcluster.api import labels

#: The label that makes a namespace a tenant; its value is the tenant (the namespace's own name).
TENANT_LABEL = labels.TENANT
#: The gateway's default namespace of key Secrets (``--key-namespace``); never a tenant.
DEFAULT_KEY_NAMESPACE = "modelcluster-system"

_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")

#: Namespaces of Kubernetes itself and of common platform add-ons, refused by name.
RESERVED_NAMESPACES = frozenset(
    {
        "default",
        DEFAULT_KEY_NAMESPACE,
        "openshift",
        "cert-manager",
        "monitoring",
        "ingress-nginx",
        "gatekeeper-system",
    }
)
#: Name prefixes reserved by Kubernetes (``kube-system``, ``kube-public``, ``kube-node-lease``) and OpenShift.
RESERVED_PREFIXES = ("kube-", "openshift-")
#: ``*-system`` is a system namespace on every platform (``istio-system``, ``gatekeeper-system``, ...).
RESERVED_SUFFIXES = ("-system",)


def name_refusal(name: str) -> str | None:
    """Why ``name`` is not even a namespace name (a DNS-1123 label), else ``None``."""
    if _DNS1123_LABEL.fullmatch(name) is None:
        return (
            "it must be a DNS-1123 label: 1 to 63 lowercase letters, digits or '-', "
            "starting and ending with a letter or digit"
        )
    return None


def tenant_refusal(name: str, key_namespace: str = DEFAULT_KEY_NAMESPACE) -> str | None:
    """Why namespace ``name`` can never be a tenant, else ``None``.

    Refused: names that are not DNS-1123 labels; ``default``; ``kube-*``; ``openshift`` and
    ``openshift-*``; ``*-system`` (``istio-system``, ``modelcluster-system``, ...); the namespace of
    the key Secrets (``key_namespace``, whatever its name) and :data:`DEFAULT_KEY_NAMESPACE`;
    ``cert-manager``, ``monitoring``, ``ingress-nginx``. No flag or label overrides this.
    """
    shape = name_refusal(name)
    if shape is not None:
        return shape
    if name == key_namespace:
        return "it is the namespace of the API key Secrets"
    if name in RESERVED_NAMESPACES:
        return "it is a system or platform namespace"
    if name.startswith(RESERVED_PREFIXES):
        return f"names starting with {' or '.join(repr(p) for p in RESERVED_PREFIXES)} are reserved by the platform"
    if name.endswith(RESERVED_SUFFIXES):
        return "names ending with '-system' are system namespaces"
    return None


def tenant_labels(name: str) -> dict[str, str]:
    """The labels that make namespace ``name`` a tenant."""
    return {TENANT_LABEL: name}


def is_tenant_namespace(name: str, namespace_labels: Mapping[str, str] | None) -> bool:
    """Whether a namespace named ``name`` with these labels is the tenant ``name``."""
    return (namespace_labels or {}).get(TENANT_LABEL) == name
