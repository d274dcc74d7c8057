from __future__ import annotations

from decimal import Decimal

import click
import pytest
from click.testing import CliRunner

from modelcluster.gateway.tenants_cli import build_set_patch, build_spec, format_table, tenants


def test_build_spec_from_options() -> None:
    spec = build_spec("ns-a", {"model_clusters": 2, "gpus": 1, "budget": Decimal("50"), "budget_period": None})
    assert spec.namespace == "ns-a"
    assert (spec.quotas.model_clusters, spec.quotas.gpus, spec.quotas.replicas) == (2, 1, None)
    assert spec.budget is not None and spec.budget.period.value == "month"
    with pytest.raises(click.BadParameter):
        build_spec(None, {"budget_period": "day"})


def test_set_patch_keeps_changes_and_removes_unset() -> None:
    current = {"quotas": {"modelClusters": 2, "gpus": 4}, "budget": {"amount": 10, "period": "day"}}
    patch = build_set_patch(current, {"gpus": 1}, ("model-clusters",), {"budget": Decimal("20.5")})
    assert patch == {
        "spec": {
            "quotas": {"modelClusters": None, "replicas": None, "gpus": 1, "pods": None},
            "budget": {"amount": 20.5, "period": "day"},
        }
    }
    assert build_set_patch(current, {}, ("budget",), {})["spec"]["budget"] is None
    with pytest.raises(click.BadParameter):
        build_set_patch({}, {}, (), {"budget_period": "week"})


@pytest.mark.parametrize(
    "args",
    [
        ["create", "team-a", "--gpus", "-1"],
        ["create", "team-a", "--model-clusters", "many"],
        ["create", "team-a", "--budget", "lots"],
        ["create", "team-a", "--budget", "-5"],
        ["create", "kube-system"],
        ["create", "default"],
        ["create", "team-a", "--namespace", "modelcluster-system"],
        ["create", "Not_A_Name"],
    ],
)
def test_bad_input_is_refused_before_any_call(args: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECONFIG", "/nonexistent")
    result = CliRunner().invoke(tenants, args)
    assert result.exit_code == 2, result.output
    assert "Kubernetes" not in result.output


def test_table() -> None:
    items = [
        {
            "metadata": {"name": "team-a"},
            "spec": {"quotas": {"modelClusters": 2}, "budget": {"amount": 5, "period": "week"}},
            "status": {
                "conditions": [{"type": "Ready", "status": "True", "reason": "Reconciled"}],
                "used": {"modelClusters": 1},
            },
        }
    ]
    lines = format_table(items).splitlines()
    assert lines[0].split() == [
        "NAME",
        "NAMESPACE",
        "READY",
        "REASON",
        "CLUSTERS",
        "REPLICAS",
        "GPUS",
        "PODS",
        "BUDGET",
    ]
    assert lines[1].split() == ["team-a", "team-a", "True", "Reconciled", "1/2", "-", "-", "-", "5", "USD/week"]
