from __future__ import annotations

from decimal import Decimal

import pytest
from pydantic import ValidationError

from modelcluster.api import BudgetPeriod, Tenant, TenantSpec
from modelcluster.api.tenant import tenant_body


def test_namespace_defaults_to_the_name() -> None:
    tenant = Tenant.from_k8s({"metadata": {"name": "team-a"}, "spec": {}})
    assert tenant.namespace == "team-a"
    assert Tenant.from_k8s({"metadata": {"name": "a"}, "spec": {"namespace": "ns-a"}}).namespace == "ns-a"


def test_quotas_and_budget_parse() -> None:
    tenant = Tenant.from_k8s(
        {
            "metadata": {"name": "a"},
            "spec": {"quotas": {"modelClusters": 2, "gpus": 0}, "budget": {"amount": 12.5, "period": "week"}},
        }
    )
    assert tenant.spec.quotas.model_clusters == 2
    assert tenant.spec.quotas.gpus == 0
    assert tenant.spec.quotas.replicas is None
    assert tenant.spec.budget is not None
    assert tenant.spec.budget.amount == Decimal("12.5")
    assert tenant.spec.budget.period is BudgetPeriod.WEEK


@pytest.mark.parametrize(
    "spec",
    [
        {"quotas": {"gpus": -1}},
        {"quotas": {"modelClusters": "many"}},
        {"budget": {"amount": -5, "period": "day"}},
        {"budget": {"amount": "lots", "period": "day"}},
        {"budget": {"amount": 5, "period": "year"}},
        {"namespace": "Not_A_Namespace"},
        {"defaults": {"capacity": {"min": 2, "desired": 1}}},
        {"defaults": {"capacity": {"desired": 0}}},
        {"defaults": {"timeout": 0}},
        {"defaults": {"container": {"cpu": "-1"}}},
        {"defaults": {"container": {"memory": "2 GB"}}},
    ],
)
def test_bad_specs_refused(spec: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        TenantSpec.model_validate(spec)


def test_body_round_trips_with_number_amount() -> None:
    spec = TenantSpec.model_validate({"quotas": {"pods": 3}, "budget": {"amount": "100", "period": "month"}})
    body = tenant_body("a", spec)
    assert body["spec"] == {"quotas": {"pods": 3}, "budget": {"amount": 100, "period": "month"}}
    assert Tenant.from_k8s(body).spec == spec
