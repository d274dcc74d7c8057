"""Model pods answer only their own cluster's credential, on the real control plane with a real runtime pod.

A tenant (or anything else on the pod network) that finds a model pod's address can call it directly, past the
gateway's keys, limits and metering. The pod must refuse that: ``/run``, ``/status`` and ``/metrics`` answer 401
in the runtime's error shape without ``Authorization: Bearer <credential>`` of *that* cluster, and a credential of
another tenant's cluster (even one of the same name) is no better. The gateway's requests, which carry the right
credential, are served; the operator's autoscaler scrapes the pod's ``/metrics`` the same way; the kubelet's probe
(``/health``) stays open. The pod spec holds only the credential's SHA-256.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from kubernetes import client as k8s

from modelcluster.api.naming import object_name
from modelcluster.api.pod_auth import VERIFIER_ENV, CredentialIssuer, verifier_of
from modelcluster.devcluster.offline_models import MODEL_ID

from support import Cluster, GatewayProcess, OperatorProcess, Tenant, eventually, pod_auth_key, pod_credential

pytestmark = pytest.mark.cluster

GROUP, VERSION, PLURAL = "modelcluster.dev", "v1alpha1", "modelclusters"
NAME = object_name(MODEL_ID)
UNAUTHORIZED = {"error": "Unauthorized", "output": None}


def api(gateway: GatewayProcess, tenant: Tenant, method: str, **kwargs: Any) -> httpx.Response:
    return httpx.request(method, f"{gateway.url}/models/v2/{MODEL_ID}", headers=tenant.headers, timeout=120, **kwargs)


def ready_pod(cluster: Cluster, namespace: str) -> k8s.V1Pod | None:
    pods = cluster.core.list_namespaced_pod(namespace, label_selector=f"app.kubernetes.io/instance={NAME}").items
    for pod in pods:
        conditions = pod.status.conditions or []
        if pod.status.pod_ip and any(c.type == "Ready" and c.status == "True" for c in conditions):
            return pod
    return None


def scrapes(operator: OperatorProcess, result: str) -> float:
    pattern = rf'^modelcluster_autoscaler_scrapes_total{{result="{result}",target="runtime"}} (\S+)$'
    found = re.search(pattern, operator.metrics(), re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_a_pod_refuses_callers_without_its_clusters_credential_and_serves_the_gateway(
    cluster: Cluster, operator: OperatorProcess, gateway: GatewayProcess, tenant: Tenant, other_tenant: Tenant
) -> None:
    if cluster.local is None:
        pytest.skip("needs the local control plane's process-backed runtime pods")
    created = api(gateway, tenant, "PUT", json={"capacity": {"min": 1, "desired": 1, "max": 1}})
    assert created.status_code == 201, created.text
    # The other tenant's cluster of the same model has the same name in its own namespace: a real credential.
    theirs = api(gateway, other_tenant, "PUT", json={"capacity": {"min": 0, "desired": 0, "max": 1}})
    assert theirs.status_code == 201, theirs.text
    pod = eventually(lambda: ready_pod(cluster, tenant.namespace), timeout=240, interval=1.0, what="a ready pod")
    base = f"http://{pod.status.pod_ip}:8000"

    mine = pod_credential(cluster, tenant.namespace, NAME)
    other = pod_credential(cluster, other_tenant.namespace, NAME)
    assert mine != other
    # Signed with another key (another installation's): no good either.
    uid = k8s.CustomObjectsApi(cluster.api_client).get_namespaced_custom_object(
        GROUP, VERSION, tenant.namespace, PLURAL, NAME
    )["metadata"]["uid"]
    forged = CredentialIssuer("f" * 48).headers(tenant.namespace, NAME, uid)

    # The pod spec carries only the hash of the credential, the signing key not at all.
    (container,) = pod.spec.containers
    env = {item.name: item.value for item in container.env or []}
    assert env[VERIFIER_ENV] == verifier_of(mine["Authorization"].split()[1])
    assert mine["Authorization"].split()[1] not in str(pod.to_dict())
    assert pod_auth_key(cluster) not in str(pod.to_dict())

    body = {"text": "a cat sits on the mat"}
    with httpx.Client(base_url=base, timeout=60) as direct:
        for headers in (
            {},
            other,
            forged,
            {"Authorization": f"Bearer {env[VERIFIER_ENV]}"},  # the hash read from the pod spec
            {"Authorization": f"Key {mine['Authorization'].split()[1]}"},
            {"Authorization": f"Key {tenant.key}"},  # the tenant's own API key
        ):
            for method, path in (("POST", "/run"), ("GET", "/status"), ("GET", "/metrics")):
                answer = direct.request(method, path, headers=headers, json=body if method == "POST" else None)
                assert answer.status_code == 401, (headers, path, answer.text)
                assert answer.json() == UNAUTHORIZED
        # The kubelet's probe needs none.
        assert direct.get("/health").status_code == 200
        # The right credential is accepted (the gateway's, below, is the same).
        assert direct.post("/run", headers=mine, json=body).status_code == 200
        assert direct.get("/metrics", headers=mine).status_code == 200

    # Through the gateway: served, as many times as asked.
    for _ in range(3):
        answer = api(gateway, tenant, "POST", json=body)
        assert answer.status_code == 200, answer.text
        assert len(answer.json()["output"]) == 384

    # The autoscaler's scrape of the pod authenticates the same way: read every tick, never refused.
    before, refused = scrapes(operator, "ok"), scrapes(operator, "refused")
    eventually(lambda: scrapes(operator, "ok") > before + 2, timeout=30, what="the autoscaler to scrape the pod")
    assert scrapes(operator, "refused") == refused
