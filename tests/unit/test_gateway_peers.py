"""Key limits follow the ready gateway replicas; keys need a tenant namespace; the bootstrap key is a record."""

from __future__ import annotations

from typing import Any

import pytest

from modelcluster.gateway.keys import bootstrap_record, generate_key, key_id_of, verify
from modelcluster.gateway.keystore import KeyStore
from modelcluster.gateway.limits import ConcurrencyLimiter
from modelcluster.gateway.peers import Peers
from modelcluster.gateway.tenant_namespaces import TenantNamespaces


def slice_(name: str, *endpoints: tuple[str, bool]) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "mc-system"},
        "endpoints": [{"addresses": [address], "conditions": {"ready": ready}} for address, ready in endpoints],
    }


def test_each_replica_takes_its_share_of_a_key_limit_as_replicas_come_and_go() -> None:
    limiter = ConcurrencyLimiter()
    peers = Peers(on_count=lambda count: setattr(limiter, "replicas", count))
    peers.reset([slice_("a", ("10.0.0.1", True), ("10.0.0.2", True), ("10.0.0.3", False))])
    assert limiter.replicas == 2 and limiter.share(10) == 5
    peers.event("ADDED", slice_("b", ("10.0.0.4", True), ("10.0.0.2", True)))  # an address in two slices: once
    assert limiter.replicas == 3 and limiter.share(10) == 4
    # One turns unready (stale keys, draining): the others take its part at once.
    peers.event("MODIFIED", slice_("b", ("10.0.0.4", False)))
    assert limiter.replicas == 2
    peers.event("DELETED", slice_("a"))
    peers.event("DELETED", slice_("b"))
    assert limiter.replicas == 1, "with none known, a replica acts alone"
    # Four replicas at 16: 4 each, so the key's total stays 16 however many replicas run.
    peers.reset([slice_("a", *((f"10.0.1.{i}", True) for i in range(4)))])
    for _ in range(4):
        assert limiter.try_acquire("k", 16)
    assert not limiter.try_acquire("k", 16)


def test_only_namespaces_labelled_with_their_own_name_are_tenants() -> None:
    table = TenantNamespaces()
    table.reset(
        [
            {"metadata": {"name": "team-a", "labels": {"modelcluster.dev/tenant": "team-a"}}},
            {"metadata": {"name": "team-b", "labels": {"modelcluster.dev/tenant": "team-a"}}},
        ]
    )
    assert "team-a" in table and "team-b" not in table
    table.event("MODIFIED", {"metadata": {"name": "team-a", "labels": {}}})
    assert "team-a" not in table
    table.event("ADDED", {"metadata": {"name": "team-a", "labels": {"modelcluster.dev/tenant": "team-a"}}})
    table.event("DELETED", {"metadata": {"name": "team-a", "labels": {"modelcluster.dev/tenant": "team-a"}}})
    assert "team-a" not in table


def test_the_bootstrap_key_is_held_as_a_hash_and_survives_the_key_table() -> None:
    key = generate_key()
    record = bootstrap_record(key, "demo", 8, "mc-system-keys")
    assert record.key_id == key_id_of(key) and key not in repr(record) and verify(record, key)
    store = KeyStore("mc-system-keys")
    store.add_static(record)
    store.reset([])  # a (re)list of the Secrets does not drop it
    assert store.authenticate(f"Key {key}") == record
    assert store.authenticate(f"Key {generate_key()}") is None
    with pytest.raises(ValueError, match="invalid tenant name 'kube-system'"):
        bootstrap_record(key, "kube-system", 8, "mc-system-keys")
    with pytest.raises(ValueError, match="mc-system-keys"):
        bootstrap_record(key, "mc-system-keys", 8, "mc-system-keys")
    with pytest.raises(ValueError, match="not of the form"):
        bootstrap_record("not-a-key", "demo", 8, "mc-system-keys")
