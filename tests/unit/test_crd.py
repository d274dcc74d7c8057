from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from modelcluster.crd import (
    CRD_PATHS,
    CRD_RENDERINGS,
    build_crd,
    build_tenant_crd,
    render_all_crds,
    render_crd,
    render_tenant_crd,
    stale_paths,
    write_crds,
)
from modelcluster.crd.cli import crd as crd_command
from modelcluster.crd.structural import to_structural

REPO = Path(__file__).resolve().parents[2]


def _walk(node: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    if isinstance(node, dict):
        found.append(node)
        for value in node.values():
            found.extend(_walk(value))
    elif isinstance(node, list):
        for value in node:
            found.extend(_walk(value))
    return found


@pytest.mark.parametrize("relative", CRD_PATHS, ids=str)
def test_committed_crd_is_fresh(relative: Path) -> None:
    committed = REPO / relative
    assert committed.is_file(), f"{relative} is missing: run `modelcluster crd`"
    expected = CRD_RENDERINGS[relative]()
    assert committed.read_text(encoding="utf-8") == expected, f"{relative} is stale: run `modelcluster crd`"


def _version() -> dict[str, Any]:
    version: dict[str, Any] = build_crd()["spec"]["versions"][0]
    return version


def _schema() -> dict[str, Any]:
    schema: dict[str, Any] = _version()["schema"]["openAPIV3Schema"]
    return schema


def test_identity() -> None:
    crd = build_crd()
    assert crd["metadata"]["name"] == "modelclusters.modelcluster.dev"
    names = crd["spec"]["names"]
    assert (names["kind"], names["plural"], names["shortNames"]) == ("ModelCluster", "modelclusters", ["mc"])
    assert crd["spec"]["scope"] == "Namespaced"
    assert _version()["name"] == "v1alpha1"


def test_schema_is_structural() -> None:
    for node in _walk(_schema()):
        assert not {"$ref", "$defs", "anyOf", "allOf", "oneOf", "title"} & node.keys(), node
        assert node.get("default", 0) is not None
        if "properties" in node:
            assert node["type"] == "object"
            assert "additionalProperties" not in node


def test_defaults_and_bounds() -> None:
    spec = _schema()["properties"]["spec"]
    assert spec["required"] == ["model"]
    capacity = spec["properties"]["capacity"]
    assert capacity["default"] == {"min": 0, "desired": 1}
    assert capacity["properties"]["min"]["default"] == 0
    assert capacity["properties"]["desired"]["default"] == 1
    assert "default" not in capacity["properties"]["max"]
    assert spec["properties"]["timeout"]["default"] == 300
    assert spec["properties"]["timeout"]["minimum"] == 1
    for node in _walk(spec):
        assert "description" in node or node.get("type") != "object" or node is spec


def test_cel_rules() -> None:
    spec = _schema()["properties"]["spec"]
    model_rules = [rule["rule"] for rule in spec["properties"]["model"]["x-kubernetes-validations"]]
    assert "self == oldSelf" in model_rules
    assert any("self.matches(" in rule for rule in model_rules)
    capacity_rules = [rule["rule"] for rule in spec["properties"]["capacity"]["x-kubernetes-validations"]]
    assert "self.min <= self.desired" in capacity_rules
    assert "!has(self.max) || self.desired <= self.max" in capacity_rules
    assert "!has(self.max) || self.max >= 1" in capacity_rules
    for node in _walk(spec):
        for rule in node.get("x-kubernetes-validations", []):
            assert rule["message"]


def test_subresources_and_columns() -> None:
    version = _version()
    assert version["subresources"]["status"] == {}
    assert version["subresources"]["scale"]["specReplicasPath"] == ".spec.capacity.desired"
    assert version["subresources"]["scale"]["labelSelectorPath"] == ".status.selector"
    columns = [column["name"] for column in version["additionalPrinterColumns"]]
    assert columns == ["Model", "Task", "Status", "Ready", "Desired", "Max", "Age"]
    status = _schema()["properties"]["status"]["properties"]
    for column in version["additionalPrinterColumns"]:
        path = column["jsonPath"].split(".")[1:]
        if path[0] == "status":
            assert path[1] in status


def test_rendering_is_yaml_of_the_dict() -> None:
    assert yaml.safe_load(render_crd()) == build_crd()


def test_write_and_check(tmp_path: Path) -> None:
    assert len(stale_paths(tmp_path)) == len(CRD_PATHS)
    written = write_crds(tmp_path)
    assert {p.read_text(encoding="utf-8") for p in written} == {render_crd(), render_tenant_crd()}
    assert stale_paths(tmp_path) == []
    (tmp_path / CRD_PATHS[1]).write_text("edited by hand\n", encoding="utf-8")
    assert stale_paths(tmp_path) == [tmp_path / CRD_PATHS[1]]


def test_cli_check(tmp_path: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(crd_command, ["--root", str(tmp_path), "--check"]).exit_code == 1
    assert runner.invoke(crd_command, ["--root", str(tmp_path)]).exit_code == 0
    assert runner.invoke(crd_command, ["--root", str(tmp_path), "--check"]).exit_code == 0


def test_structural_rejects_real_unions() -> None:
    with pytest.raises(ValueError, match="union"):
        to_structural({"anyOf": [{"type": "string"}, {"type": "integer"}]})
    assert to_structural({}) == {"x-kubernetes-preserve-unknown-fields": True}


def _tenant_schema() -> dict[str, Any]:
    schema: dict[str, Any] = build_tenant_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def test_tenant_identity_and_scope() -> None:
    crd = build_tenant_crd()
    assert crd["metadata"]["name"] == "tenants.modelcluster.dev"
    assert crd["spec"]["group"] == build_crd()["spec"]["group"]
    assert crd["spec"]["scope"] == "Cluster"
    assert crd["spec"]["names"]["kind"] == "Tenant"
    assert crd["spec"]["versions"][0]["subresources"] == {"status": {}}


def test_tenant_schema_is_structural_with_bounds() -> None:
    for node in _walk(_tenant_schema()):
        assert not {"$ref", "$defs", "anyOf", "allOf", "oneOf", "title"} & node.keys(), node
        if "properties" in node:
            assert node["type"] == "object"
    spec = _tenant_schema()["properties"]["spec"]
    quotas = spec["properties"]["quotas"]["properties"]
    assert set(quotas) == {"modelClusters", "replicas", "gpus", "pods"}
    for quota in quotas.values():
        assert (quota["type"], quota["minimum"]) == ("integer", 0)
    budget = spec["properties"]["budget"]
    assert budget["required"] == ["amount", "period"]
    assert (budget["properties"]["amount"]["type"], budget["properties"]["amount"]["minimum"]) == ("number", 0)
    assert budget["properties"]["period"]["enum"] == ["day", "week", "month"]
    rules = " ".join(rule["rule"] for rule in _tenant_schema()["x-kubernetes-validations"])
    assert "kube-" in rules and "'default'" in rules


def test_all_crds_stream() -> None:
    documents = list(yaml.safe_load_all(render_all_crds()))
    assert documents == [build_crd(), build_tenant_crd()]
