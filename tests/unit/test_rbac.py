"""The operator's RBAC files: the cluster-wide and the namespaced variant grant the same rules."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

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
    assert grants(role["rules"]) == grants(one(cluster_wide, "ClusterRole")["rules"])
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
