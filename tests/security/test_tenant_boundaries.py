"""Tenant boundaries on a real control plane: which namespaces can be tenants, and what callers learn of failures."""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from modelcluster.gateway.keys import generate_key, key_id_of

from support import Cluster, GatewayProcess, Tenant, eventually

pytestmark = pytest.mark.cluster

CLI = Path(sys.executable).with_name("modelcluster")
KEY_NAMESPACE = GatewayProcess.KEY_NAMESPACE
TENANT_LABEL = "modelcluster.dev/tenant"


def keys_create(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, KUBECONFIG=str(cluster.kubeconfig))
    argv = [str(CLI), "keys", "create", f"--namespace={KEY_NAMESPACE}", *args]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)


def key_secrets(cluster: Cluster) -> set[str]:
    listed = cluster.core.list_namespaced_secret(KEY_NAMESPACE, label_selector="modelcluster.dev/api-key=true")
    return {secret.metadata.name for secret in listed.items}


def labels_of(cluster: Cluster, name: str) -> dict[str, str]:
    return dict(cluster.core.read_namespace(name).metadata.labels or {})


@pytest.fixture
def keys_namespace(cluster: Cluster) -> None:
    try:
        cluster.core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=KEY_NAMESPACE)))
    except ApiException as error:
        if error.status != 409:
            raise


@pytest.mark.parametrize(
    "tenant", ["default", "modelcluster-system", "kube-system", "istio-system", "cert-manager", "openshift-x"]
)
@pytest.mark.parametrize("existing", [False, True])
def test_system_namespaces_are_refused_whatever_the_flags(
    cluster: Cluster, keys_namespace: None, tenant: str, existing: bool
) -> None:
    before = key_secrets(cluster)
    before_labels = labels_of(cluster, "default")
    result = keys_create(cluster, f"--tenant={tenant}", *(["--existing-namespace"] if existing else []))
    assert result.returncode == 2, result.stderr
    assert f"invalid tenant name '{tenant}'" in result.stderr
    assert result.stdout == ""
    assert key_secrets(cluster) == before
    assert labels_of(cluster, "default") == before_labels
    assert TENANT_LABEL not in labels_of(cluster, "default")


def test_an_existing_unlabelled_namespace_is_a_tenant_only_when_asked(cluster: Cluster, namespace: str) -> None:
    """``namespace`` (the fixture) is a plain namespace made without the tenant label."""
    before = key_secrets(cluster)
    refused = keys_create(cluster, f"--tenant={namespace}")
    assert refused.returncode == 1
    assert f"namespace {namespace} exists but is not a tenant namespace" in refused.stderr
    assert "--existing-namespace" in refused.stderr
    assert refused.stdout == ""
    assert key_secrets(cluster) == before
    assert TENANT_LABEL not in labels_of(cluster, namespace)

    made = keys_create(cluster, f"--tenant={namespace}", "--existing-namespace")
    assert made.returncode == 0, made.stderr
    assert f"labelled namespace {namespace}" in made.stderr
    assert key_id_of(made.stdout.splitlines()[-1]) is not None
    assert labels_of(cluster, namespace)[TENANT_LABEL] == namespace

    # Labelled now: a second key needs no flag.
    again = keys_create(cluster, f"--tenant={namespace}")
    assert again.returncode == 0, again.stderr
    assert "namespace" not in again.stderr.splitlines()[0]


def test_a_new_tenant_namespace_is_created_labelled(cluster: Cluster, tenant: Tenant) -> None:
    assert labels_of(cluster, tenant.namespace)[TENANT_LABEL] == tenant.namespace


@pytest.mark.parametrize("target", ["default", "kube-system", KEY_NAMESPACE])
def test_a_hand_made_key_secret_for_a_system_namespace_answers_401(
    cluster: Cluster, gateway: GatewayProcess, tenant: Tenant, target: str
) -> None:
    key = generate_key()
    key_id = key_id_of(key)
    assert key_id is not None

    def encoded(value: str) -> str:
        return base64.b64encode(value.encode()).decode()

    name = f"modelcluster-key-{key_id}"
    secret = k8s.V1Secret(
        metadata=k8s.V1ObjectMeta(
            name=name,
            labels={
                "app.kubernetes.io/part-of": "modelcluster",
                "modelcluster.dev/api-key": "true",
                TENANT_LABEL: target,
            },
        ),
        type="Opaque",
        data={
            "sha256": encoded(hashlib.sha256(key.encode()).hexdigest()),
            "tenant": encoded(target),
            "concurrency": encoded("4"),
        },
    )
    cluster.core.create_namespaced_secret(KEY_NAMESPACE, secret)
    try:
        log = gateway.log_path
        eventually(lambda: name in log.read_text(errors="replace"), timeout=30, what="the gateway to report the Secret")
        assert f"invalid tenant name '{target}'" in log.read_text(errors="replace")
        for path in ("/models/v2/list/clusters", "/models/v2/list/tasks"):
            answer = httpx.get(f"{gateway.url}{path}", headers={"Authorization": f"Key {key}"}, timeout=10)
            assert answer.status_code == 401
            assert answer.json() == {"error": "Unauthorized", "output": None}
        # A genuine tenant's key still works on the same gateway.
        assert (
            httpx.get(f"{gateway.url}/models/v2/list/clusters", headers=tenant.headers, timeout=10).status_code == 200
        )
        assert key not in log.read_text(errors="replace")
    finally:
        cluster.core.delete_namespaced_secret(name, KEY_NAMESPACE)


# --- a gateway whose ServiceAccount may not create clusters: the 403 is not passed on ---------------------------


def _token_kubeconfig(cluster: Cluster, account: str, directory: Path) -> Path:
    request = k8s.AuthenticationV1TokenRequest(spec=k8s.V1TokenRequestSpec(audiences=[], expiration_seconds=3600))
    token = cluster.core.create_namespaced_service_account_token(account, KEY_NAMESPACE, request).status.token
    server = yaml.safe_load(cluster.kubeconfig.read_text())["clusters"][0]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": server["name"], "cluster": server["cluster"]}],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [{"name": account, "context": {"cluster": server["name"], "user": account}}],
        "current-context": account,
    }
    path = directory / "gateway-kubeconfig"
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def _read_only_rbac(account: str) -> list[dict[str, Any]]:
    """The gateway's RBAC less ``create``/``patch``/``delete`` of ModelClusters."""
    subject = [{"kind": "ServiceAccount", "name": account, "namespace": KEY_NAMESPACE}]
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": account, "namespace": KEY_NAMESPACE}},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": account},
            "rules": [
                {"apiGroups": ["modelcluster.dev"], "resources": ["modelclusters"], "verbs": ["get", "list", "watch"]},
                {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]},
                {"apiGroups": [""], "resources": ["services"], "verbs": ["list", "watch"]},
                {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]},
                {"apiGroups": ["modelcluster.dev"], "resources": ["tenants"], "verbs": ["list", "watch"]},
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": account},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": account},
            "subjects": subject,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": account, "namespace": KEY_NAMESPACE},
            "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["list", "watch"]}],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": account, "namespace": KEY_NAMESPACE},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": account},
            "subjects": subject,
        },
    ]


@pytest.fixture
def read_only_gateway(
    cluster: Cluster, kubectl: list[str], gateway: GatewayProcess, tmp_path: Path
) -> Iterator[GatewayProcess]:
    account = f"sec-gateway-{uuid.uuid4().hex[:8]}"
    manifest = yaml.safe_dump_all(_read_only_rbac(account))
    subprocess.run([*kubectl, "apply", "-f", "-"], input=manifest, text=True, check=True, capture_output=True)
    limited = Cluster(_token_kubeconfig(cluster, account, tmp_path), cluster.api_client, cluster.local)
    process = GatewayProcess(limited, tmp_path, [])
    try:
        process.start()
        yield process
    finally:
        process.stop()
        subprocess.run([*kubectl, "delete", "--ignore-not-found", "-f", "-"], input=manifest, text=True, check=True)


def test_a_forbidden_call_does_not_leak_the_service_account(read_only_gateway: GatewayProcess, tenant: Tenant) -> None:
    url = f"{read_only_gateway.url}/models/v2/openai-community/gpt2"

    def known() -> bool:
        return (
            httpx.get(f"{read_only_gateway.url}/models/v2/list/tasks", headers=tenant.headers, timeout=5).status_code
            == 200
        )

    eventually(known, timeout=30, what="the read-only gateway to learn the tenant's key")
    body = {"capacity": {"min": 0, "desired": 1, "max": 1}}
    answer = httpx.put(url, json=body, headers=tenant.headers, timeout=30)
    assert answer.status_code == 503, answer.text
    message = answer.json()["error"]
    assert message.startswith("the Kubernetes API is unavailable (request "), message
    for leaked in ("serviceaccount", "sec-gateway-", "forbidden", "cannot create", tenant.namespace):
        assert leaked not in message.lower()
    # The details are in the gateway's log, under the request id.
    request_id = message.rsplit(" ", 1)[-1].rstrip(")")
    log = read_only_gateway.log_path.read_text(errors="replace")
    assert request_id in log and "forbidden" in log
