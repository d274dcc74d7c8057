"""The operator's RBAC files: both variants grant the same rules; one admission policy narrows the pod patch."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from modelcluster.api.labels import MANAGED_BY, MANAGER
from modelcluster.operator.autoscaling.loop import DELETION_COST

REPO = Path(__file__).resolve().parents[2]
PLACEHOLDER = "TENANT_NAMESPACE"


def documents(name: str) -> list[dict[str, Any]]:
    with (REPO / "operator" / name).open(encoding="utf-8") as stream:
        return [doc for doc in yaml.safe_load_all(stream) if doc]


def one(docs: list[dict[str, Any]], kind: str, namespace: str | None = None) -> dict[str, Any]:
    found = [doc for doc in docs if doc["kind"] == kind and doc["metadata"].get("namespace") == namespace]
    assert len(found) == 1, (kind, namespace)
    return found[0]


def grants(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def test_the_operator_may_set_owner_references_that_block_deletion() -> None:
    cluster_role = one(documents("rbac.yaml"), "ClusterRole")
    assert ("modelcluster.dev", "modelclusters/finalizers", "update") in grants(cluster_role["rules"])


def test_namespaced_rbac_has_no_cluster_wide_objects_and_the_same_rules() -> None:
    cluster_wide = documents("rbac.yaml")
    namespaced = documents("rbac-namespaced.yaml")
    assert not {"ClusterRole", "ClusterRoleBinding"} & {doc["kind"] for doc in namespaced}
    role = one(namespaced, "Role", PLACEHOLDER)
    # Tenants are cluster-scoped: only the cluster-wide operator reconciles them (the namespaced one runs without).
    assert grants(role["rules"]) == grants(one(cluster_wide, "ClusterRole")["rules"]) - TENANT_GRANTS
    binding = one(namespaced, "RoleBinding", PLACEHOLDER)
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "modelcluster-operator",
    }
    assert binding["subjects"] == one(cluster_wide, "ClusterRoleBinding")["subjects"]


def test_both_variants_share_the_operator_namespace_objects() -> None:
    cluster_wide = documents("rbac.yaml")
    namespaced = documents("rbac-namespaced.yaml")
    for kind in ("ServiceAccount", "Role", "RoleBinding"):
        assert one(namespaced, kind, "modelcluster-system") == one(cluster_wide, kind, "modelcluster-system")
    leases = grants(one(cluster_wide, "Role", "modelcluster-system")["rules"])
    assert {("coordination.k8s.io", "leases", verb) for verb in ("create", "get", "update")} <= leases


def test_the_placeholder_is_not_a_valid_namespace_so_an_unedited_apply_fails() -> None:
    text = (REPO / "operator" / "rbac-namespaced.yaml").read_text(encoding="utf-8")
    assert PLACEHOLDER in text
    assert PLACEHOLDER.lower() != PLACEHOLDER  # DNS labels are lower case


POLICY_KINDS = ("ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding")
TENANT_GRANTS = {
    ("modelcluster.dev", "tenants", "get"),
    ("modelcluster.dev", "tenants", "list"),
    ("modelcluster.dev", "tenants", "watch"),
    ("modelcluster.dev", "tenants/status", "get"),
    ("modelcluster.dev", "tenants/status", "patch"),
    ("", "namespaces", "get"),
    ("", "namespaces", "create"),
    ("", "namespaces", "patch"),
    ("", "resourcequotas", "get"),
    ("", "resourcequotas", "create"),
    ("", "resourcequotas", "patch"),
    ("", "limitranges", "get"),
    ("", "limitranges", "create"),
    ("", "limitranges", "patch"),
}


# Tenant namespaces followed, in both variants, so each gets its NetworkPolicy as it appears.
NAMESPACE_FOLLOWER_GRANTS = {("", "namespaces", "list"), ("", "namespaces", "watch")}


def test_the_tenant_rules_are_cluster_wide_and_delete_nothing() -> None:
    rules = grants(one(documents("rbac.yaml"), "ClusterRole")["rules"])
    assert rules >= TENANT_GRANTS | NAMESPACE_FOLLOWER_GRANTS
    allowed = TENANT_GRANTS | NAMESPACE_FOLLOWER_GRANTS
    tenant_resources = ("namespaces", "resourcequotas", "limitranges", "tenants")
    assert not {grant for grant in rules if grant[1] in tenant_resources} - allowed


def pod_rules(rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [rule for rule in rules if "" in rule["apiGroups"] and "pods" in rule["resources"]]


def test_pods_are_read_patched_and_only_the_warm_pools_created_and_deleted_never_updated() -> None:
    for name, kind, namespace in (("rbac.yaml", "ClusterRole", None), ("rbac-namespaced.yaml", "Role", PLACEHOLDER)):
        rules = one(documents(name), kind, namespace)["rules"]
        assert {verb for _, resource, verb in grants(pod_rules(rules)) if resource == "pods"} == {
            "get",
            "list",
            "watch",
            "patch",
            "create",
            "delete",
        }
        # The patch is a rule of its own, on pods alone: no subresource (status, ephemeral containers, exec).
        (patch,) = [rule for rule in pod_rules(rules) if "patch" in rule["verbs"]]
        assert patch == {"apiGroups": [""], "resources": ["pods"], "verbs": ["patch"]}
        (pool,) = [rule for rule in pod_rules(rules) if "create" in rule["verbs"]]
        assert pool == {"apiGroups": [""], "resources": ["pods"], "verbs": ["create", "delete"]}
        assert not [res for rule in rules for res in rule["resources"] if res.startswith("pods/")]


def test_an_admission_policy_narrows_the_pod_patch_in_both_variants() -> None:
    cluster_wide, namespaced = documents("rbac.yaml"), documents("rbac-namespaced.yaml")
    for kind in POLICY_KINDS:
        assert one(cluster_wide, kind) == one(namespaced, kind)
    policy = one(cluster_wide, "ValidatingAdmissionPolicy")
    binding = one(cluster_wide, "ValidatingAdmissionPolicyBinding")
    assert binding["spec"] == {"policyName": policy["metadata"]["name"], "validationActions": ["Deny"]}
    spec = policy["spec"]
    assert spec["failurePolicy"] == "Fail"
    assert spec["matchConstraints"]["resourceRules"] == [
        {"apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods", "pods/*"], "operations": ["UPDATE"]}
    ]
    # It applies to the operator's ServiceAccount, the subject of its bindings, and to nobody else.
    (subject,) = one(cluster_wide, "ClusterRoleBinding")["subjects"]
    user = f"system:serviceaccount:{subject['namespace']}:{subject['name']}"
    assert [condition["expression"] for condition in spec["matchConditions"]] == [
        f"request.userInfo.username == '{user}'"
    ]


def test_the_policy_names_the_annotation_and_label_the_code_uses() -> None:
    text = yaml.safe_dump(one(documents("rbac.yaml"), "ValidatingAdmissionPolicy")["spec"], width=1000)
    assert f"'{DELETION_COST}'" in text
    assert f"'{MANAGED_BY}'" in text and f"'{MANAGER}'" in text
    # Each refusal is its own validation, with a message saying which change the operator may not make.
    messages = [
        check["message"] for check in one(documents("rbac.yaml"), "ValidatingAdmissionPolicy")["spec"]["validations"]
    ]
    for part in ("subresource", "own pods", "spec", "labels", DELETION_COST, "owner references"):
        assert any(part in message for message in messages), part


def chart_rules(template: str, kind: str) -> list[dict[str, Any]]:
    """The rules of the one ``kind`` in a chart template (its template lines left out: rules hold none)."""
    text = (REPO / "charts" / "modelcluster" / "templates" / template).read_text(encoding="utf-8")
    text = re.sub(r"\{\{-?\s*/\*.*?\*/\s*-?\}\}", "", text, flags=re.DOTALL)  # template comments
    plain = "\n".join(line for line in text.splitlines() if "{{" not in line and "}}" not in line)
    docs = [doc for doc in yaml.safe_load_all(plain) if doc]
    (found,) = [doc for doc in docs if doc.get("kind") == kind]
    rules: list[dict[str, Any]] = found["rules"]
    return rules


def test_the_gateway_reads_services_and_slices_and_writes_neither() -> None:
    rules = one(documents("rbac-gateway.yaml"), "ClusterRole")["rules"]
    granted = grants(rules)
    # Routing trusts a slice only when the operator's Service (owned by the ModelCluster) is its controller.
    for resource, group in (("services", ""), ("endpointslices", "discovery.k8s.io")):
        assert {(g, r, v) for g, r, v in granted if r == resource} == {
            (group, resource, "list"),
            (group, resource, "watch"),
        }
    assert chart_rules("gateway-rbac.yaml", "ClusterRole") == rules
