from __future__ import annotations

from typing import Any

from modelcluster.api import Tenant
from modelcluster.gateway.clusters import ClusterBody, build_cluster
from modelcluster.gateway.tenant_defaults import with_tenant_defaults


def tenant(**spec: Any) -> Tenant:
    return Tenant.from_k8s({"metadata": {"name": "team-a"}, "spec": spec})


def spec_of(body: dict[str, Any], of: Tenant | None) -> dict[str, Any]:
    cluster = build_cluster("team-a", "org/model", with_tenant_defaults(ClusterBody.model_validate(body), of))
    spec: dict[str, Any] = cluster["spec"]
    return spec


def test_no_tenant_or_no_defaults_leaves_the_body_to_the_crd() -> None:
    assert spec_of({}, None) == {"model": "org/model"}
    assert spec_of({}, tenant()) == {"model": "org/model"}
    assert spec_of({}, tenant(defaults={"container": {"cpu": "1"}})) == {"model": "org/model"}


def test_what_the_body_leaves_out_comes_from_the_tenant() -> None:
    given = tenant(defaults={"capacity": {"min": 0, "desired": 0, "max": 2}, "timeout": 900})
    assert spec_of({}, given) == {"model": "org/model", "capacity": {"min": 0, "desired": 0, "max": 2}, "timeout": 900}
    assert spec_of({"timeout": 60}, given)["timeout"] == 60
    # A stated capacity is kept whole, never merged with the tenant's.
    assert spec_of({"capacity": {"max": 1}}, given)["capacity"] == {"max": 1}


def test_a_default_capacity_without_max_keeps_it_unset() -> None:
    given = tenant(defaults={"capacity": {"desired": 2}})
    assert spec_of({}, given)["capacity"] == {"min": 0, "desired": 2}
