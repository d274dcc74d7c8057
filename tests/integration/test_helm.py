"""The Helm chart: ``helm lint``, its rendering against the Kubernetes 1.34 schemas, and a real install.

The install runs on the cluster under test: every object must be accepted by the apiserver, the operator
and gateway pods must really run (on the local control plane the pod runner starts ``modelcluster operator``
and ``modelcluster gateway`` as processes acting with their pods' ServiceAccounts) and become Ready, and
``helm uninstall`` must leave nothing behind but the CRD.
"""

from __future__ import annotations

import base64
import json
import secrets
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml
from kubernetes import client as k8s
from kubernetes import dynamic

from modelcluster.api import Tenant
from modelcluster.api.pod_auth import MIN_SIGNING_KEY_LENGTH, SIGNING_KEY_ENV
from modelcluster.api.tenant_policy import POLICY_NAME, TenantPolicyConfig, build_tenant_policy
from modelcluster.catalog.loader import load_catalog
from modelcluster.crd import render_crd, render_tenant_crd
from modelcluster.devcluster.tools import ensure_tools
from modelcluster.gateway.keys import key_id_of

from support import Cluster, drop_namespace, eventually

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "modelcluster"
KUBERNETES_VERSION = "1.34.0"
#: Kinds defined by CRDs of other projects: kubernetes-validate has no schema for them.
FOREIGN_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor"), ("modelcluster.dev/v1alpha1", "Tenant")}
#: Seconds the installed pods may take to run and turn Ready (two Python processes on a loaded machine).
READY_DEADLINE = 90

Manifest = dict[str, Any]


def new_key() -> str:
    """A key in the gateway's format, made here so the test knows it (the chart stores only its hash)."""
    return f"mc_{secrets.token_hex(6)}_{secrets.token_urlsafe(32)}"


KEY = new_key()
#: Value sets rendered and linted: the defaults, every optional part on, and the namespaced operator.
VALUE_SETS: dict[str, list[str]] = {
    "defaults": [],
    "everything": [
        "--set=bootstrapKey.enabled=true",
        "--set=networkPolicy.namespaces={team-a,team-b}",
        "--set=metrics.serviceMonitor.enabled=true",
        "--set=catalog.extra.defaultTier=xs",
        "--set=image.digest=sha256:" + "0" * 64,
    ],
    "namespaced": ["--set=watchNamespaces={team-a,team-b}"],
    "no-gateway": ["--set=gateway.enabled=false", "--set=operator.autoscaler.enabled=false"],
    "tenants": [
        '--set-json=tenants=[{"name": "team-a", "quotas": {"modelClusters": 2, "gpus": 0}, '
        '"budget": {"amount": 12.5, "period": "week"}, "defaults": {"capacity": {"desired": 0, "max": 2}, '
        '"timeout": 900, "container": {"cpu": "250m"}}}, {"name": "team-b", "namespace": "ns-b"}]'
    ],
}


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(ensure_tools().helm), *args], capture_output=True, text=True, timeout=120)


def render(values: list[str], namespace: str = "modelcluster-system") -> list[Manifest]:
    result = helm(
        "template",
        "mc",
        str(CHART),
        f"--namespace={namespace}",
        f"--kube-version={KUBERNETES_VERSION}",
        "--include-crds",
        *values,
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def of_kind(manifests: list[Manifest], kind: str) -> list[Manifest]:
    return [doc for doc in manifests if doc["kind"] == kind]


@pytest.mark.parametrize("name", VALUE_SETS)
def test_helm_lint_is_clean(name: str) -> None:
    result = helm("lint", str(CHART), "--strict", *VALUE_SETS[name])
    assert result.returncode == 0, result.stdout + result.stderr
    complaints = [line for line in result.stdout.splitlines() if "[WARNING]" in line or "[ERROR]" in line]
    assert complaints == []


def test_values_outside_the_schema_are_refused() -> None:
    result = helm("template", "mc", str(CHART), "--set=operator.replicaz=2")
    assert result.returncode != 0
    assert "replicaz" in result.stderr
    # A key (or its hash) is never a value: the chart refuses both.
    for value in (f"bootstrapKey.key={KEY}", "bootstrapKey.sha256=" + "0" * 64):
        result = helm("template", "mc", str(CHART), "--set=bootstrapKey.enabled=true", f"--set={value}")
        assert result.returncode != 0, value


@pytest.mark.parametrize("name", VALUE_SETS)
def test_rendered_objects_match_the_kubernetes_schemas(name: str) -> None:
    manifests = render(VALUE_SETS[name])
    assert of_kind(manifests, "CustomResourceDefinition"), "the CRD is part of the chart"
    for doc in manifests:
        if (doc["apiVersion"], doc["kind"]) in FOREIGN_KINDS:
            continue
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']}: {error.message} at {list(error.path)}")


def test_the_chart_crd_is_the_generated_one() -> None:
    assert (CHART / "crds" / "modelclusters.yaml").read_text(encoding="utf-8") == render_crd()
    assert (CHART / "crds" / "tenants.yaml").read_text(encoding="utf-8") == render_tenant_crd()


def test_tenants_declared_in_values_render_as_tenants() -> None:
    tenants = {doc["metadata"]["name"]: doc for doc in of_kind(render(VALUE_SETS["tenants"]), "Tenant")}
    assert set(tenants) == {"team-a", "team-b"}
    a, b = Tenant.from_k8s(tenants["team-a"]), Tenant.from_k8s(tenants["team-b"])
    assert (a.namespace, a.spec.quotas.model_clusters, a.spec.quotas.gpus) == ("team-a", 2, 0)
    assert a.spec.budget is not None and (str(a.spec.budget.amount), a.spec.budget.period.value) == ("12.5", "week")
    assert b.namespace == "ns-b" and b.spec.budget is None and b.spec.defaults is None
    defaults = a.spec.defaults
    assert defaults is not None and defaults.timeout == 900 and defaults.container.cpu == "250m"
    assert defaults.capacity is not None and (defaults.capacity.desired, defaults.capacity.max) == (0, 2)
    assert not of_kind(render([]), "Tenant")


@pytest.mark.parametrize(
    "tenant",
    [
        '{"name": "a", "quotas": {"gpus": -1}}',
        '{"name": "a", "quotas": {"gpus": "two"}}',
        '{"name": "a", "budget": {"amount": -1, "period": "day"}}',
        '{"name": "a", "budget": {"amount": "lots", "period": "day"}}',
        '{"name": "a", "budget": {"amount": 1, "period": "year"}}',
        '{"name": "Not_A_Name"}',
        '{"name": "a", "defaults": {"timeout": 0}}',
        '{"name": "a", "defaults": {"container": {"cpu": "-1"}}}',
        '{"name": "a", "defaults": {"capacity": {"desired": -1}}}',
        '{"name": "a", "defaults": {"idle": 5}}',
    ],
)
def test_bad_tenants_in_values_are_refused(tenant: str) -> None:
    assert helm("template", "mc", str(CHART), f"--set-json=tenants=[{tenant}]").returncode != 0


def test_pods_follow_the_restricted_profile_with_resources() -> None:
    deployments = of_kind(render(VALUE_SETS["everything"]), "Deployment")
    assert {doc["metadata"]["name"] for doc in deployments} == {"mc-modelcluster-operator", "mc-modelcluster-gateway"}
    for deployment in deployments:
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False
            assert context["readOnlyRootFilesystem"] is True
            assert context["capabilities"] == {"drop": ["ALL"]}
            assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
            assert container["image"] == "ghcr.io/modelcluster/control-plane@sha256:" + "0" * 64
            assert {"readinessProbe", "livenessProbe"} <= set(container)


def test_cluster_wide_mode_uses_a_cluster_role() -> None:
    manifests = render([])
    assert {doc["metadata"]["name"] for doc in of_kind(manifests, "ClusterRole")} == {
        "mc-modelcluster-operator",
        "mc-modelcluster-gateway",
    }
    operator = next(doc for doc in of_kind(manifests, "Deployment") if doc["metadata"]["name"].endswith("-operator"))
    args = operator["spec"]["template"]["spec"]["containers"][0]["args"]
    assert not [arg for arg in args if arg.startswith("--namespace")]
    assert "--gateway-service=modelcluster-system/mc-modelcluster-gateway-metrics" in args
    # Secrets: read by the gateway, in the key namespace only (not the release's, which holds the signing key).
    secret_rules = [
        (doc["kind"], doc["metadata"].get("namespace"), tuple(rule["verbs"]))
        for doc in manifests
        if doc["kind"] in ("Role", "ClusterRole")
        for rule in doc["rules"]
        if "secrets" in rule["resources"]
    ]
    assert secret_rules == [("Role", "modelcluster-system-keys", ("list", "watch"))]


def _rules(path: Path, kind: str, name: str) -> list[Manifest]:
    with path.open(encoding="utf-8") as stream:
        documents = [doc for doc in yaml.safe_load_all(stream) if doc]
    (found,) = [doc for doc in documents if doc["kind"] == kind and doc["metadata"]["name"] == name]
    rules: list[Manifest] = found["rules"]
    return rules


def test_rbac_rules_are_those_of_the_plain_manifests() -> None:
    cluster_wide, namespaced = render([]), render(VALUE_SETS["namespaced"])
    roles = {(d["kind"], d["metadata"]["name"]): d["rules"] for d in cluster_wide if d["kind"].endswith("Role")}
    operator_rules = _rules(REPO / "operator" / "rbac.yaml", "ClusterRole", "modelcluster-operator")
    assert roles[("ClusterRole", "mc-modelcluster-operator")] == operator_rules

    # Tenants are cluster-scoped: a namespaced operator runs without them, and its Roles lack their rules.
    # (Both keep the read-only follow of tenant namespaces, for their NetworkPolicies.)
    def tenant_rule(rule: dict[str, Any]) -> bool:
        resources = set(rule["resources"])
        return bool(resources & {"tenants", "tenants/status", "resourcequotas", "limitranges"}) or (
            "namespaces" in resources and "create" in rule["verbs"]
        )

    namespaced_rules = [rule for rule in operator_rules if not tenant_rule(rule)]
    assert len(namespaced_rules) == len(operator_rules) - 5
    for role in of_kind(namespaced, "Role"):
        if role["metadata"]["name"] == "mc-modelcluster-operator":
            assert role["rules"] == namespaced_rules
    gateway_rules = _rules(REPO / "operator" / "rbac-gateway.yaml", "ClusterRole", "modelcluster-gateway")
    assert roles[("ClusterRole", "mc-modelcluster-gateway")] == gateway_rules
    keys_rules = _rules(REPO / "operator" / "rbac-gateway.yaml", "Role", "modelcluster-gateway-keys")
    assert roles[("Role", "mc-modelcluster-gateway-keys")] == keys_rules
    self_rules = _rules(REPO / "operator" / "rbac.yaml", "Role", "modelcluster-operator-self")
    # The chart makes the Lease itself, so the operator needs no create; the rest is the same.
    lease_create = {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]}
    expected_self = [
        {**rule, "resourceNames": ["mc-modelcluster-operator"]} if "resourceNames" in rule else rule
        for rule in self_rules
        if rule != lease_create
    ]
    assert roles[("Role", "mc-modelcluster-operator-self")] == expected_self


def _documents(path: Path, kind: str) -> Manifest:
    with path.open(encoding="utf-8") as stream:
        (found,) = [doc for doc in yaml.safe_load_all(stream) if doc and doc["kind"] == kind]
    return found


@pytest.mark.parametrize("name", ["defaults", "namespaced", "everything"])
def test_the_pod_patch_policy_is_that_of_the_plain_manifests_for_the_release_account(name: str) -> None:
    manifests = render(VALUE_SETS[name], namespace="mc-system")
    (policy,) = of_kind(manifests, "ValidatingAdmissionPolicy")
    (binding,) = of_kind(manifests, "ValidatingAdmissionPolicyBinding")
    assert policy["metadata"]["name"] == "mc-modelcluster-operator-pod-patch"
    assert binding["spec"] == {"policyName": policy["metadata"]["name"], "validationActions": ["Deny"]}
    plain = _documents(REPO / "operator" / "rbac.yaml", "ValidatingAdmissionPolicy")["spec"]
    (account,) = [
        doc["metadata"]["name"]
        for doc in of_kind(manifests, "ServiceAccount")
        if doc["metadata"]["name"].endswith("-operator")
    ]
    expected = yaml.safe_load(
        yaml.safe_dump(plain).replace(
            "system:serviceaccount:modelcluster-system:modelcluster-operator",
            f"system:serviceaccount:mc-system:{account}",
        )
    )
    assert policy["spec"] == expected
    assert f"system:serviceaccount:mc-system:{account}'" in policy["spec"]["matchConditions"][0]["expression"]


def test_namespaced_mode_renders_roles_and_flags() -> None:
    manifests = render(VALUE_SETS["namespaced"])
    operator_cluster_roles = [
        d for d in of_kind(manifests, "ClusterRole") if d["metadata"]["name"].endswith("-operator")
    ]
    assert operator_cluster_roles == []
    roles = {(d["metadata"]["namespace"], d["metadata"]["name"]) for d in of_kind(manifests, "Role")}
    assert {("team-a", "mc-modelcluster-operator"), ("team-b", "mc-modelcluster-operator")} <= roles
    bindings = {(d["metadata"]["namespace"], d["roleRef"]["kind"]) for d in of_kind(manifests, "RoleBinding")}
    assert {("team-a", "Role"), ("team-b", "Role")} <= bindings
    operator = next(doc for doc in of_kind(manifests, "Deployment") if doc["metadata"]["name"].endswith("-operator"))
    args = operator["spec"]["template"]["spec"]["containers"][0]["args"]
    assert [arg for arg in args if arg.startswith("--namespace")] == ["--namespace=team-a", "--namespace=team-b"]
    policies = {d["metadata"]["namespace"] for d in of_kind(manifests, "NetworkPolicy")}
    assert policies == {"team-a", "team-b"}


def test_the_gateway_metrics_are_off_the_tenant_facing_service() -> None:
    manifests = render(VALUE_SETS["everything"])
    services = {doc["metadata"]["name"]: doc for doc in of_kind(manifests, "Service")}
    # Tenants reach the API only: no metrics port in their Service.
    assert [port["name"] for port in services["mc-modelcluster-gateway"]["spec"]["ports"]] == ["http"]
    metrics = services["mc-modelcluster-gateway-metrics"]["spec"]
    assert metrics["clusterIP"] == "None"
    assert metrics["ports"] == [{"name": "metrics", "port": 8083, "targetPort": "metrics", "protocol": "TCP"}]
    assert metrics["selector"] == services["mc-modelcluster-gateway"]["spec"]["selector"]
    gateway = next(doc for doc in of_kind(manifests, "Deployment") if doc["metadata"]["name"].endswith("-gateway"))
    container = gateway["spec"]["template"]["spec"]["containers"][0]
    assert "--metrics-port=8083" in container["args"]
    assert {"name": "metrics", "containerPort": 8083, "protocol": "TCP"} in container["ports"]
    monitor = of_kind(manifests, "ServiceMonitor")[0]
    assert [endpoint["port"] for endpoint in monitor["spec"]["endpoints"]] == ["metrics"]


def test_network_policies_are_on_by_default_one_per_known_tenant_as_the_operator_builds_them() -> None:
    manifests = render(VALUE_SETS["everything"], namespace="mc-system")
    policies = {doc["metadata"]["namespace"]: doc for doc in of_kind(manifests, "NetworkPolicy")}
    assert set(policies) == {"team-a", "team-b", "demo"}, "networkPolicy.namespaces and the bootstrap tenant"
    config = TenantPolicyConfig(platform_namespace="mc-system")
    for namespace, policy in policies.items():
        assert policy["metadata"]["name"] == POLICY_NAME
        assert policy["spec"] == build_tenant_policy(namespace, config)["spec"], namespace
    assert render(["--set=networkPolicy.enabled=false"]) and not of_kind(
        render(["--set=networkPolicy.enabled=false"]), "NetworkPolicy"
    )
    # The operator gets the same egress rules for the tenants that come later.
    operator = next(doc for doc in of_kind(manifests, "Deployment") if doc["metadata"]["name"].endswith("-operator"))
    args = operator["spec"]["template"]["spec"]["containers"][0]["args"]
    sources = next(arg for arg in args if arg.startswith("--model-sources="))
    assert json.loads(sources.split("=", 1)[1]) == [dict(rule) for rule in config.model_sources]
    peers = next(arg for arg in args if arg.startswith("--dns-peers="))
    assert json.loads(peers.split("=", 1)[1]) == [dict(peer) for peer in config.dns_peers]


def _env(deployment: Manifest) -> dict[str, Manifest]:
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {entry["name"]: entry for entry in container["env"]}


def test_the_bootstrap_key_is_generated_at_install_or_read_from_a_secret_never_a_value() -> None:
    manifests = render(VALUE_SETS["everything"])
    secrets_by_name = {doc["metadata"]["name"]: doc for doc in of_kind(manifests, "Secret")}
    generated = base64.b64decode(secrets_by_name["mc-modelcluster-bootstrap-key"]["data"]["key"]).decode()
    assert key_id_of(generated) is not None, "a key of the gateway's format"
    gateway = next(doc for doc in of_kind(manifests, "Deployment") if doc["metadata"]["name"].endswith("-gateway"))
    env = _env(gateway)
    assert env["MODELCLUSTER_GATEWAY_BOOTSTRAP_KEY"]["valueFrom"] == {
        "secretKeyRef": {"name": "mc-modelcluster-bootstrap-key", "key": "key"}
    }
    args = gateway["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--bootstrap-tenant=demo" in args and "--bootstrap-concurrency=64" in args
    (namespace,) = [doc for doc in of_kind(manifests, "Namespace") if doc["metadata"]["name"] == "demo"]
    assert namespace["metadata"]["labels"]["modelcluster.dev/tenant"] == "demo", "a tenant namespace"
    # From an existing Secret: nothing of the key is rendered at all.
    existing = render(["--set=bootstrapKey.enabled=true", "--set=bootstrapKey.existingSecret=my-first-key"])
    assert "mc-modelcluster-bootstrap-key" not in {doc["metadata"]["name"] for doc in of_kind(existing, "Secret")}
    gateway = next(doc for doc in of_kind(existing, "Deployment") if doc["metadata"]["name"].endswith("-gateway"))
    assert _env(gateway)["MODELCLUSTER_GATEWAY_BOOTSTRAP_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "my-first-key"


def test_the_signing_key_is_generated_and_given_to_the_operator_and_gateway_only() -> None:
    manifests = render([])
    (secret,) = [doc for doc in of_kind(manifests, "Secret") if doc["metadata"]["name"] == "mc-modelcluster-pod-auth"]
    assert len(base64.b64decode(secret["data"]["key"])) >= MIN_SIGNING_KEY_LENGTH
    for deployment in of_kind(manifests, "Deployment"):
        assert _env(deployment)[SIGNING_KEY_ENV]["valueFrom"] == {
            "secretKeyRef": {"name": "mc-modelcluster-pod-auth", "key": "key"}
        }
    existing = render(["--set=podAuth.existingSecret=platform-signing-key"])
    assert "mc-modelcluster-pod-auth" not in {doc["metadata"]["name"] for doc in of_kind(existing, "Secret")}
    for deployment in of_kind(existing, "Deployment"):
        assert _env(deployment)[SIGNING_KEY_ENV]["valueFrom"]["secretKeyRef"]["name"] == "platform-signing-key"


def test_catalog_config_map_carries_the_model_images(tmp_path: Path) -> None:
    values = ["--set=modelImages.text=registry.internal/runtime-text:1.2.3", "--set=catalog.extra.defaultTier=xs"]
    (config_map,) = of_kind(render(values), "ConfigMap")
    catalog = yaml.safe_load(config_map["data"]["catalog.yaml"])
    assert catalog["families"]["text"] == {"image": "registry.internal/runtime-text:1.2.3"}
    assert catalog["defaultTier"] == "xs"
    # The operator's own loader accepts it, layered over the default catalog.
    path = tmp_path / "catalog.yaml"
    path.write_text(config_map["data"]["catalog.yaml"], encoding="utf-8")
    assert load_catalog([path]).families["text"].image == "registry.internal/runtime-text:1.2.3"


# --- a real install ---------------------------------------------------------------------------------------------


@pytest.fixture
def release_namespace(cluster: Cluster) -> Iterator[str]:
    name = f"mcs-{uuid.uuid4().hex[:8]}"
    yield name
    drop_namespace(cluster.core, name)


def _exists(client: dynamic.DynamicClient, doc: Manifest) -> bool:
    resource = client.resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
    try:
        resource.get(name=doc["metadata"]["name"], namespace=doc["metadata"].get("namespace"))
    except dynamic.exceptions.NotFoundError:
        return False
    return True


def _ready(pod: k8s.V1Pod) -> bool:
    conditions = pod.status.conditions or []
    return pod.status.phase == "Running" and any(c.type == "Ready" and c.status == "True" for c in conditions)


@pytest.mark.cluster
def test_install_runs_the_control_plane_and_uninstall_leaves_only_the_crd(
    cluster: Cluster, release_namespace: str
) -> None:
    if cluster.local is None:
        pytest.skip("the control-plane pods run as processes on the local control plane only")
    tenant = f"tenant-{uuid.uuid4().hex[:8]}"
    release = "mc"
    key = new_key()
    kube = [f"--kubeconfig={cluster.kubeconfig}", f"--namespace={release_namespace}"]
    values = [
        "--set=gateway.replicas=1",
        # The local pod runner applies no volumes: the catalog ConfigMap is checked by rendering only.
        "--set=catalog.enabled=false",
        "--set=bootstrapKey.enabled=true",
        "--set=bootstrapKey.existingSecret=first-key",
        f"--set=bootstrapKey.tenant={tenant}",
    ]
    selector = f"app.kubernetes.io/instance={release}"
    client = dynamic.DynamicClient(cluster.api_client)
    # The bootstrap key from a Secret of the administrator's, never from the values.
    cluster.core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=release_namespace)))
    first_key = k8s.V1Secret(metadata=k8s.V1ObjectMeta(name="first-key"), string_data={"key": key})
    cluster.core.create_namespaced_secret(release_namespace, first_key)
    installed = helm("install", release, str(CHART), *kube, *values)
    assert installed.returncode == 0, installed.stderr
    assert key not in helm("get", "values", release, "--all", *kube).stdout
    try:
        manifest = helm("get", "manifest", release, *kube)
        assert manifest.returncode == 0, manifest.stderr
        objects = [doc for doc in yaml.safe_load_all(manifest.stdout) if doc]
        assert objects and all(_exists(client, doc) for doc in objects)

        def all_ready() -> list[k8s.V1Pod] | None:
            pods = cluster.core.list_namespaced_pod(release_namespace, label_selector=selector).items
            names = {pod.metadata.labels["app.kubernetes.io/name"] for pod in pods if _ready(pod)}
            return pods if names == {"modelcluster-operator", "modelcluster-gateway"} else None

        pods = eventually(all_ready, timeout=READY_DEADLINE, interval=0.5, what="the operator and gateway pods Ready")
        by_name = {pod.metadata.labels["app.kubernetes.io/name"]: pod for pod in pods}
        network = cluster.local.process_pod_network
        for pod in pods:
            # An address of the pod network: a real process serves it, not a simulated pod.
            assert pod.status.pod_ip and pod.status.pod_ip in {str(a) for a in network.hosts()}, pod.status.pod_ip
        operator, gateway = by_name["modelcluster-operator"], by_name["modelcluster-gateway"]

        # The operator leads with its pod's identity, through its ServiceAccount's Lease permissions.
        lease = k8s.CoordinationV1Api(cluster.api_client).read_namespaced_lease(
            f"{release}-modelcluster-operator", release_namespace
        )
        assert lease.spec.holder_identity == operator.metadata.name
        assert httpx.get(f"http://{operator.status.pod_ip}:8082/metrics", timeout=5).status_code == 200

        # The gateway got the bootstrap key from the administrator's Secret (as its environment) and answers with it.
        base = f"http://{gateway.status.pod_ip}:8080"
        assert httpx.get(f"{base}/models/v2/list/tasks", timeout=5).status_code == 401
        answer = httpx.get(f"{base}/models/v2/list/tasks", headers={"Authorization": f"Key {key}"}, timeout=5)
        assert answer.status_code == 200, answer.text
        assert answer.json()["error"] is None
        # /metrics is on the gateway's metrics port only.
        assert httpx.get(f"{base}/metrics", timeout=5).status_code == 404
        metrics = httpx.get(f"http://{gateway.status.pod_ip}:8083/metrics", timeout=5)
        assert metrics.status_code == 200 and "modelcluster_gateway_requests_total" in metrics.text
    finally:
        uninstalled = helm("uninstall", release, *kube, "--wait", "--timeout=90s")
    assert uninstalled.returncode == 0, uninstalled.stderr

    # The key namespace stays (helm.sh/resource-policy: keep), with the keys in it.
    keys_namespace = f"{release_namespace}-keys"
    kept = [doc for doc in objects if doc["kind"] == "Namespace" and doc["metadata"]["name"] == keys_namespace]
    assert kept and _exists(client, kept[0])
    drop_namespace(cluster.core, keys_namespace)
    cluster.core.delete_namespaced_secret("first-key", release_namespace)

    def gone() -> bool:
        pods = cluster.core.list_namespaced_pod(release_namespace, label_selector=selector)
        return not pods.items and not any(_exists(client, doc) for doc in objects if doc not in kept)

    eventually(gone, timeout=60, interval=0.5, what="every object of the release gone")
    leftovers = [
        f"{kind}/{item.metadata.name}"
        for kind, items in (
            ("ClusterRole", k8s.RbacAuthorizationV1Api(cluster.api_client).list_cluster_role(label_selector=selector)),
            (
                "ClusterRoleBinding",
                k8s.RbacAuthorizationV1Api(cluster.api_client).list_cluster_role_binding(label_selector=selector),
            ),
            (
                "ValidatingAdmissionPolicy",
                k8s.AdmissionregistrationV1Api(cluster.api_client).list_validating_admission_policy(
                    label_selector=selector
                ),
            ),
            (
                "ValidatingAdmissionPolicyBinding",
                k8s.AdmissionregistrationV1Api(cluster.api_client).list_validating_admission_policy_binding(
                    label_selector=selector
                ),
            ),
            ("Lease", k8s.CoordinationV1Api(cluster.api_client).list_namespaced_lease(release_namespace)),
            ("Secret", cluster.core.list_namespaced_secret(release_namespace)),
            ("ConfigMap", cluster.core.list_namespaced_config_map(release_namespace, label_selector=selector)),
            (
                "ServiceAccount",
                cluster.core.list_namespaced_service_account(release_namespace, label_selector=selector),
            ),
        )
        for item in items.items
    ]
    assert leftovers == []
    assert k8s.ApiextensionsV1Api(cluster.api_client).read_custom_resource_definition("modelclusters.modelcluster.dev")


def _gateway_container(values: list[str]) -> dict[str, Any]:
    deployment = next(d for d in of_kind(render(values), "Deployment") if d["metadata"]["name"].endswith("gateway"))
    container: dict[str, Any] = deployment["spec"]["template"]["spec"]["containers"][0]
    container["volumes"] = deployment["spec"]["template"]["spec"]["volumes"]
    return container


def test_the_ledger_url_comes_from_a_secret_else_an_sqlite_file() -> None:
    shared = _gateway_container(["--set=gateway.ledger.urlSecret.name=ledger-db"])
    env = {item["name"]: item for item in shared["env"]}
    ref = env["MODELCLUSTER_GATEWAY_LEDGER_URL"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "ledger-db", "key": "url"}
    assert "ledger" not in {volume["name"] for volume in shared["volumes"]}
    alone = _gateway_container([])
    env = {item["name"]: item for item in alone["env"]}
    assert env["MODELCLUSTER_GATEWAY_LEDGER_URL"]["value"].startswith("sqlite+aiosqlite:////var/lib/modelcluster/")
    assert {"name": "ledger", "mountPath": "/var/lib/modelcluster/ledger"} in alone["volumeMounts"]
    assert helm("template", "mc", str(CHART), "--set=gateway.ledger.urlSecret.key=").returncode != 0
