from __future__ import annotations

from typing import Any

from modelcluster.gateway.tenants import TenantTable


def _tenant(name: str, namespace: str | None = None, **quotas: int) -> dict[str, Any]:
    spec: dict[str, Any] = {"quotas": quotas}
    if namespace is not None:
        spec["namespace"] = namespace
    return {"metadata": {"name": name}, "spec": spec}


def test_lookup_by_name_and_namespace() -> None:
    table = TenantTable()
    table.reset([_tenant("team-a", modelClusters=2), _tenant("team-b", "ns-b", gpus=1)])
    a = table.get("team-a")
    assert a is not None and a.spec.quotas.model_clusters == 2
    b = table.for_namespace("ns-b")
    assert b is not None and b.name == "team-b" and b.spec.quotas.gpus == 1
    assert table.for_namespace("team-b") is None
    assert [t.name for t in table.all()] == ["team-a", "team-b"]


def test_events_update_and_delete() -> None:
    table = TenantTable()
    table.event("ADDED", _tenant("a", modelClusters=1))
    table.event("MODIFIED", _tenant("a", modelClusters=5))
    tenant = table.for_namespace("a")
    assert tenant is not None and tenant.spec.quotas.model_clusters == 5
    table.event("DELETED", _tenant("a"))
    assert table.get("a") is None and table.for_namespace("a") is None
    assert len(table) == 0


def test_a_malformed_tenant_is_left_out() -> None:
    table = TenantTable()
    table.event("ADDED", {"metadata": {"name": "bad"}, "spec": {"quotas": {"gpus": -1}}})
    assert table.get("bad") is None


def test_a_second_tenant_of_one_namespace_takes_over_when_the_first_goes() -> None:
    table = TenantTable()
    table.event("ADDED", _tenant("first", "shared"))
    table.event("ADDED", _tenant("second", "shared"))
    first = table.for_namespace("shared")
    assert first is not None and first.name == "first"
    table.event("DELETED", _tenant("first", "shared"))
    second = table.for_namespace("shared")
    assert second is not None and second.name == "second"


def test_the_older_of_two_tenants_of_one_namespace_holds_it_whatever_the_order_seen() -> None:
    older = {
        **_tenant("zz-older", "shared", gpus=1),
        "metadata": {"name": "zz-older", "creationTimestamp": "2026-01-01T00:00:00Z"},
    }
    newer = {
        **_tenant("aa-newer", "shared", gpus=9),
        "metadata": {"name": "aa-newer", "creationTimestamp": "2026-06-01T00:00:00Z"},
    }
    for order in ([older, newer], [newer, older]):
        table = TenantTable()
        table.reset(order)
        held = table.for_namespace("shared")
        assert held is not None and held.name == "zz-older"
    table.event("DELETED", older)
    held = table.for_namespace("shared")
    assert held is not None and held.name == "aa-newer"
    # A Tenant moved to another namespace (a new object of that name) leaves the first one.
    table.event("MODIFIED", _tenant("aa-newer", "elsewhere"))
    assert table.for_namespace("shared") is None and table.for_namespace("elsewhere") is not None
