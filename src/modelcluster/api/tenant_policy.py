"""The NetworkPolicy of a tenant namespace: one pure builder, used by the operator (which applies it to every
tenant namespace as it appears) and mirrored by the Helm chart (``templates/networkpolicy.yaml``, which a test
keeps equal to :func:`build_tenant_policy`).

Every pod of a tenant namespace is a model pod. The policy lets in only the gateway and the operator of the
platform namespace, on the runtime's port; and lets out only DNS (the cluster's resolver) and the configured
model sources (by default the public internet on 443, without private, shared, loopback and link-local ranges:
no apiserver, no cloud metadata address, no other namespace's pods). Only a CNI that enforces NetworkPolicy
(Calico, Cilium, ...) acts on it; elsewhere the pod credentials (:mod:`modelcluster.api.pod_auth`) still hold.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from modelcluster.api import labels

POLICY_NAME = "modelcluster-tenant"
COMPONENT = "network-policy"
GATEWAY_NAME = "modelcluster-gateway"
OPERATOR_NAME = "modelcluster-operator"
RUNTIME_PORT = 8000
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
#: Never reachable from a model pod through the default model source: RFC 1918, shared (CGNAT), loopback,
#: link-local (169.254.169.254, the cloud metadata address, is in it), and "this network".
PRIVATE_RANGES = (
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.168.0.0/16",
)
#: The cluster's resolver: kube-dns (CoreDNS keeps that label) in kube-system.
DEFAULT_DNS_PEERS: tuple[Mapping[str, Any], ...] = (
    {
        "namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: "kube-system"}},
        "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
    },
)
#: Where models come from by default: HTTPS anywhere public (the Hugging Face hub and its CDN; media URLs).
DEFAULT_MODEL_SOURCES: tuple[Mapping[str, Any], ...] = (
    {
        "to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": list(PRIVATE_RANGES)}}],
        "ports": [{"port": 443, "protocol": "TCP"}],
    },
)


@dataclass(frozen=True)
class TenantPolicyConfig:
    """What the policy depends on besides the namespace: where the platform runs and what pods may reach."""

    platform_namespace: str = "modelcluster-system"
    runtime_port: int = RUNTIME_PORT
    #: NetworkPolicy peers that resolve names (UDP and TCP 53).
    dns_peers: tuple[Mapping[str, Any], ...] = DEFAULT_DNS_PEERS
    #: NetworkPolicy egress rules (``to`` and ``ports``) towards model sources; empty: DNS only.
    model_sources: tuple[Mapping[str, Any], ...] = field(default=DEFAULT_MODEL_SOURCES)


def policy_labels() -> dict[str, str]:
    """The labels of every tenant policy the operator applies (its watch selects on them)."""
    return {
        labels.PART_OF: labels.PART_OF_NAME,
        labels.MANAGED_BY: labels.MANAGER,
        labels.COMPONENT: COMPONENT,
    }


def policy_spec(config: TenantPolicyConfig) -> dict[str, Any]:
    """The ``spec`` of a tenant namespace's NetworkPolicy (the same for every tenant)."""
    platform = {"matchLabels": {NAMESPACE_NAME_LABEL: config.platform_namespace}}
    control_plane = {
        "matchExpressions": [
            {"key": labels.NAME, "operator": "In", "values": [GATEWAY_NAME, OPERATOR_NAME]},
        ]
    }
    dns: dict[str, Any] = {
        "to": [dict(peer) for peer in config.dns_peers],
        "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}],
    }
    return {
        "podSelector": {},
        "policyTypes": ["Ingress", "Egress"],
        "ingress": [
            {
                "from": [{"namespaceSelector": platform, "podSelector": control_plane}],
                "ports": [{"port": config.runtime_port, "protocol": "TCP"}],
            }
        ],
        "egress": [dns, *(dict(rule) for rule in config.model_sources)],
    }


def build_tenant_policy(namespace: str, config: TenantPolicyConfig) -> dict[str, Any]:
    """The NetworkPolicy :data:`POLICY_NAME` of tenant namespace ``namespace``."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": POLICY_NAME, "namespace": namespace, "labels": policy_labels()},
        "spec": policy_spec(config),
    }


def is_tenant_namespace(name: str, namespace_labels: Mapping[str, str] | None, platform: Sequence[str]) -> bool:
    """Whether namespace ``name`` is a tenant the policy follows: labelled :data:`labels.TENANT` with its own name,
    and not a platform namespace or one of Kubernetes' own (a mislabelled ``kube-system`` keeps its DNS)."""
    if name in platform or name == "default" or name.startswith("kube-"):
        return False
    return (namespace_labels or {}).get(labels.TENANT) == name
