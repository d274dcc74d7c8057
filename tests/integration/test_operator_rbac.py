"""The operator under its own ServiceAccount's token, with exactly the RBAC of operator/rbac*.yaml."""

from __future__ import annotations

import re
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from modelcluster.api.labels import MANAGED_SELECTOR, NAME
from modelcluster.api.modelcluster import WAKE_ANNOTATION
from modelcluster.api.naming import object_name
from modelcluster.api.warm_pool import CLAIMED, POOL_LABEL, STANDBY, STANDBY_APP_NAME, STATE_LABEL
from modelcluster.kube.client import MERGE_OPTIONS
from modelcluster.operator.autoscaling.loop import DELETION_COST
from modelcluster.operator.builders.warm_pool import claim_patch

from support import Cluster, OperatorProcess, eventually, modelcluster_body, or_none

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
GROUP, VERSION, PLURAL = "modelcluster.dev", "v1alpha1", "modelclusters"
ACCOUNT = "modelcluster-operator"
MODEL = "openai-community/gpt2"
AUTOSCALER = "modelcluster-autoscaler"
CLUSTER_SCOPED = ("ClusterRole", "ClusterRoleBinding", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding")
JSON_PATCH = {"_content_type": "application/json-patch+json"}


@dataclass(frozen=True)
class Installed:
    """The RBAC as applied: the operator's own namespace and a kubeconfig holding its ServiceAccount's token."""

    namespace: str
    kubeconfig: Path

    @property
    def user(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{ACCOUNT}"


def rbac_documents(path: Path, operator_namespace: str, suffix: str, served: str | None = None) -> list[dict[str, Any]]:
    """The file's objects with the operator's namespace moved and cluster-wide names made unique to the test."""
    text = path.read_text()
    if served is not None:
        text = text.replace("TENANT_NAMESPACE", served)
    # The admission policy names the ServiceAccount in its match condition.
    text = text.replace(
        f"system:serviceaccount:modelcluster-system:{ACCOUNT}", f"system:serviceaccount:{operator_namespace}:{ACCOUNT}"
    )
    documents = [doc for doc in yaml.safe_load_all(text) if doc]
    for doc in documents:
        metadata = doc["metadata"]
        if metadata.get("namespace") == "modelcluster-system":
            metadata["namespace"] = operator_namespace
        if doc["kind"] in CLUSTER_SCOPED:
            metadata["name"] += suffix
        if doc["kind"] == "ClusterRoleBinding":
            doc["roleRef"]["name"] += suffix
        if doc["kind"] == "ValidatingAdmissionPolicyBinding":
            doc["spec"]["policyName"] += suffix
        for subject in doc.get("subjects", []):
            subject["namespace"] = operator_namespace
    return documents


def token_kubeconfig(cluster: Cluster, namespace: str, directory: Path) -> Path:
    """A kubeconfig for the ServiceAccount: a token from the TokenRequest API, the cluster's server and CA."""
    request = k8s.AuthenticationV1TokenRequest(spec=k8s.V1TokenRequestSpec(audiences=[], expiration_seconds=3600))
    token = cluster.core.create_namespaced_service_account_token(ACCOUNT, namespace, request).status.token
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    server = admin["clusters"][0]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": server["name"], "cluster": server["cluster"]}],
        "users": [{"name": ACCOUNT, "user": {"token": token}}],
        "contexts": [{"name": ACCOUNT, "context": {"cluster": server["name"], "user": ACCOUNT}}],
        "current-context": ACCOUNT,
    }
    path = directory / "operator-kubeconfig"
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


@pytest.fixture
def install(cluster: Cluster, kubectl: list[str], tmp_path: Path) -> Iterator[Any]:
    """Apply an RBAC file (for ``served`` when namespaced) in a fresh operator namespace; removed afterwards."""
    applied: list[str] = []
    suffix = f"-{uuid.uuid4().hex[:8]}"
    operator_namespace = f"mc-operator{suffix}"

    def apply(path: Path, served: str | None = None) -> Installed:
        cluster.core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=operator_namespace)))
        manifest = yaml.safe_dump_all(rbac_documents(path, operator_namespace, suffix, served))
        applied.append(manifest)
        subprocess.run([*kubectl, "apply", "-f", "-"], input=manifest, text=True, check=True)
        return Installed(operator_namespace, token_kubeconfig(cluster, operator_namespace, tmp_path))

    try:
        yield apply
    finally:
        for manifest in applied:
            subprocess.run([*kubectl, "delete", "--ignore-not-found", "-f", "-"], input=manifest, text=True, check=True)
        try:
            cluster.core.delete_namespace(operator_namespace)
        except ApiException as error:
            if error.status != 404:
                raise


def can_i(kubectl: list[str], installed: Installed, *args: str) -> bool:
    done = subprocess.run([*kubectl, "auth", "can-i", *args, f"--as={installed.user}"], capture_output=True, text=True)
    return done.stdout.strip() == "yes"


def start_operator(cluster: Cluster, installed: Installed, directory: Path, args: list[str]) -> OperatorProcess:
    as_account = Cluster(installed.kubeconfig, cluster.api_client, cluster.local)
    process = OperatorProcess(as_account, directory, [f"--lease-namespace={installed.namespace}", *args])
    process.start()
    return process


def create_cluster(cluster: Cluster, namespace: str) -> str:
    """A stopped cluster woken an hour ago: long idle (no pod starts), but asked for once, so the autoscaler records
    its queue and idle clock (a cluster never asked for gets no status write of the autoscaler's)."""
    name = object_name(MODEL)
    woken = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    body = modelcluster_body(MODEL, capacity={"min": 0, "desired": 0, "max": 1}, annotations={WAKE_ANNOTATION: woken})
    k8s.CustomObjectsApi(cluster.api_client).create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    return name


def reconciled(cluster: Cluster, namespace: str, name: str) -> bool:
    """Deployment created, status written by the reconciler for this generation, and by the autoscaler."""
    found = k8s.CustomObjectsApi(cluster.api_client).get_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name
    )
    status = found.get("status") or {}
    managers = {entry.get("manager") for entry in found["metadata"].get("managedFields") or []}
    if or_none(lambda: cluster.apps.read_namespaced_deployment(name, namespace)) is None:
        return False
    return status.get("observedGeneration") == found["metadata"]["generation"] and AUTOSCALER in managers


def untouched(cluster: Cluster, namespace: str, name: str) -> bool:
    found = k8s.CustomObjectsApi(cluster.api_client).get_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name
    )
    deployments = cluster.apps.list_namespaced_deployment(namespace).items
    return not found.get("status") and not deployments


FORBIDDEN = re.compile(r"\b403\b|forbidden", re.IGNORECASE)


def refusals(log: Path) -> list[str]:
    return [line for line in log.read_text().splitlines() if FORBIDDEN.search(line)]


def test_cluster_wide_rbac_is_enough(
    cluster: Cluster, kubectl: list[str], namespace: str, install: Any, operator_aside: None, tmp_path: Path
) -> None:
    installed: Installed = install(REPO / "operator" / "rbac.yaml")
    assert can_i(
        kubectl, installed, "update", "modelclusters.modelcluster.dev", "--subresource=finalizers", "-n", namespace
    )
    assert not can_i(kubectl, installed, "delete", "deployments.apps", "-n", namespace)
    operator = start_operator(cluster, installed, tmp_path, [])
    try:
        name = create_cluster(cluster, namespace)
        eventually(lambda: reconciled(cluster, namespace, name), what="the cluster reconciled under the RBAC")
    finally:
        operator.stop()
    assert refusals(tmp_path / "operator-1.log") == []


def test_namespaced_mode_needs_only_roles_and_leaves_other_namespaces_alone(
    cluster: Cluster, kubectl: list[str], namespace: str, install: Any, operator_aside: None, tmp_path: Path
) -> None:
    installed: Installed = install(REPO / "operator" / "rbac-namespaced.yaml", served=namespace)
    assert can_i(
        kubectl, installed, "update", "modelclusters.modelcluster.dev", "--subresource=finalizers", "-n", namespace
    )
    assert not can_i(kubectl, installed, "list", "deployments.apps", "--all-namespaces")
    assert not can_i(kubectl, installed, "list", "modelclusters.modelcluster.dev", "--all-namespaces")
    other = f"t-other-{uuid.uuid4().hex[:8]}"
    cluster.core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=other)))
    try:
        ignored = create_cluster(cluster, other)  # first, so it had every chance to be picked up
        operator = start_operator(cluster, installed, tmp_path, [f"--namespace={namespace}"])
        try:
            name = create_cluster(cluster, namespace)
            eventually(lambda: reconciled(cluster, namespace, name), what="the cluster reconciled under Roles only")
            assert untouched(cluster, other, ignored)
        finally:
            operator.stop()
        assert refusals(tmp_path / "operator-1.log") == []
    finally:
        cluster.core.delete_namespace(other)


def gated_pod(name: str, labels: dict[str, str]) -> k8s.V1Pod:
    """A pod that is never scheduled (a scheduling gate nobody lifts): only its object matters here."""
    return k8s.V1Pod(
        metadata=k8s.V1ObjectMeta(name=name, labels=labels, annotations={"kept": "yes"}),
        spec=k8s.V1PodSpec(
            scheduling_gates=[k8s.V1PodSchedulingGate(name="modelcluster.dev/test-never")],
            containers=[k8s.V1Container(name="model", image="registry.invalid/model:1")],
        ),
    )


def refused_by_policy(call: Any) -> str | None:
    """The policy's message when ``call`` is refused by the admission policy (403, not RBAC), else None."""
    try:
        call()
    except ApiException as error:
        assert error.status == 403, error.body
        assert "ValidatingAdmissionPolicy" in error.body, error.body
        return str(error.body)
    return None


@pytest.mark.parametrize("variant", ["rbac.yaml", "rbac-namespaced.yaml"])
def test_the_pod_patch_reaches_only_the_deletion_cost_of_the_operators_pods(
    cluster: Cluster, kubectl: list[str], namespace: str, install: Any, variant: str
) -> None:
    installed: Installed = install(REPO / "operator" / variant, served=namespace)
    # RBAC: pods are patched, created and deleted (the warm pool's), never updated or reached through a subresource.
    for verb in ("patch", "create", "delete"):
        assert can_i(kubectl, installed, verb, "pods", "-n", namespace), verb
    assert not can_i(kubectl, installed, "update", "pods", "-n", namespace)
    for subresource in ("status", "ephemeralcontainers", "exec"):
        assert not can_i(kubectl, installed, "patch", "pods", f"--subresource={subresource}", "-n", namespace)
    cluster.core.create_namespaced_pod(namespace, gated_pod("managed", dict(MANAGED_SELECTOR)))
    cluster.core.create_namespaced_pod(namespace, gated_pod("foreign", {"app": "someone-else"}))
    standby = {**MANAGED_SELECTOR, NAME: STANDBY_APP_NAME, POOL_LABEL: "text-micro", STATE_LABEL: STANDBY}
    cluster.core.create_namespaced_pod(namespace, gated_pod("standby", standby))
    cluster.core.create_namespaced_pod(namespace, gated_pod("standby-other", standby))
    core = k8s.CoreV1Api(k8s_config.new_client_from_config(config_file=str(installed.kubeconfig)))

    def patch(name: str, body: Any, options: dict[str, Any] = MERGE_OPTIONS) -> Any:
        return lambda: core.patch_namespaced_pod(name, namespace, body, **options)

    def cost(value: str) -> dict[str, Any]:
        return {"metadata": {"annotations": {DELETION_COST: value}}}  # the autoscaler's very patch

    # A new policy takes effect within seconds: until then the foreign pod could still be patched.
    eventually(lambda: refused_by_policy(patch("foreign", cost("3"))), what="the admission policy in force")
    # Allowed: the deletion cost of a pod with the operator's managed-by label, as the autoscaler sets it.
    patch("managed", cost("7"))()
    patch("managed", cost("-1000"))()
    annotations = cluster.core.read_namespaced_pod("managed", namespace).metadata.annotations
    assert annotations[DELETION_COST] == "-1000" and annotations["kept"] == "yes"
    # Allowed: the claim of a waiting warm-pool standby, as the warm pool makes it.
    claim = claim_patch("c", "org/model", "feature-extraction", "2026-01-01T00:00:00.000000Z", datetime.now(UTC))
    patch("standby", claim)()
    assert cluster.core.read_namespaced_pod("standby", namespace).metadata.labels[STATE_LABEL] == CLAIMED
    # Refused, each by its own validation.
    refusals = [
        ("own pods", patch("foreign", cost("3"))),
        ("labels", patch("managed", {"metadata": {"labels": {"app": "moved"}}})),
        ("labels", patch("managed", {"metadata": {"labels": {"app.kubernetes.io/managed-by": None}}})),
        (DELETION_COST, patch("managed", {"metadata": {"annotations": {"kept": "no"}}})),
        (DELETION_COST, patch("managed", {"metadata": {"annotations": {"added": "yes"}}})),
        ("owner references or finalizers", patch("managed", {"metadata": {"finalizers": ["example.com/hold"]}})),
        # A standby's labels change only by its claim, and only once.
        ("labels", patch("standby-other", {"metadata": {"labels": {"app": "moved"}}})),
        ("labels", patch("standby", {"metadata": {"labels": {"app.kubernetes.io/instance": "another"}}})),
        ("labels", patch("standby-other", {"metadata": {"labels": {POOL_LABEL: None}}})),
        # Changes that the pod validation itself allows: a new image, a lifted scheduling gate.
        ("spec", patch("managed", [{"op": "replace", "path": "/spec/containers/0/image", "value": "x:2"}], JSON_PATCH)),
        ("spec", patch("managed", [{"op": "remove", "path": "/spec/schedulingGates"}], JSON_PATCH)),
    ]
    for reason, call in refusals:
        message = refused_by_policy(call)
        assert message is not None and reason in message, (reason, message)
    after = cluster.core.read_namespaced_pod("managed", namespace)
    assert after.metadata.labels == dict(MANAGED_SELECTOR)
    assert after.spec.containers[0].image == "registry.invalid/model:1" and after.spec.scheduling_gates
    # The policy binds the operator only: an administrator still changes what it may not.
    cluster.core.patch_namespaced_pod("foreign", namespace, {"metadata": {"labels": {"app": "moved"}}})
