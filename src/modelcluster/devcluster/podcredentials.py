"""A pod's ServiceAccount credentials as a kubeconfig, for process-backed pods.

A kubelet mounts a projected token at ``/var/run/secrets/kubernetes.io/serviceaccount``;
local processes share the host's file system, so the pod runner instead writes a kubeconfig
per pod (the pod's own token, bound to the pod, and the cluster's CA) and points
``KUBECONFIG`` at it. The process then acts with exactly its ServiceAccount's RBAC.
"""

from __future__ import annotations

import base64
from typing import Any

#: Lifetime asked for the bound token; pods of the local cluster are not expected to outlive it.
TOKEN_SECONDS = 7 * 24 * 3600


def wants_token(pod: dict[str, Any]) -> bool:
    """Whether the pod gets its ServiceAccount token (``automountServiceAccountToken`` not false)."""
    return pod["spec"].get("automountServiceAccountToken") is not False


def service_account_of(pod: dict[str, Any]) -> str:
    return str(pod["spec"].get("serviceAccountName") or "default")


def token_request(pod: dict[str, Any]) -> dict[str, Any]:
    """The TokenRequest body: a token bound to the pod, so it dies with the pod."""
    meta = pod["metadata"]
    return {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {
            "expirationSeconds": TOKEN_SECONDS,
            "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": meta["name"], "uid": meta["uid"]},
        },
    }


def pod_kubeconfig(server: str, ca_pem: bytes, token: str, namespace: str) -> dict[str, Any]:
    """A kubeconfig for ``server`` with the token, whose default namespace is the pod's."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "local",
                "cluster": {
                    "server": server,
                    "certificate-authority-data": base64.b64encode(ca_pem).decode("ascii"),
                },
            }
        ],
        "users": [{"name": "pod", "user": {"token": token}}],
        "contexts": [{"name": "pod", "context": {"cluster": "local", "user": "pod", "namespace": namespace}}],
        "current-context": "pod",
    }
