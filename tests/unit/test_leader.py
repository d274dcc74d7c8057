"""Leader election: client-go's rules, decided on the local monotonic clock."""

from __future__ import annotations

import asyncio
import copy
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kubernetes_asyncio import client

from modelcluster.kube.client import KubeError
from modelcluster.operator.config import LeaderElectionConfig
from modelcluster.operator.controller.leader import (
    FencedApiClient,
    LeaderElector,
    LeaseNamespaceMissing,
    LeaseRecord,
    NotLeading,
    Observation,
    expired,
    lease_spec,
    may_take,
    micro_time,
    observe,
    renew_budget,
)

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
SETTINGS = LeaderElectionConfig(name="lease", namespace="system")


def record(holder: str | None = "other", renew: datetime | None = NOW, duration: int = 15) -> LeaseRecord:
    return LeaseRecord(holder, renew, duration, 0)


def test_micro_time_has_six_fraction_digits() -> None:
    assert micro_time(NOW) == "2026-01-01T12:00:00.000000Z"


def test_lease_record_from_api() -> None:
    parsed = LeaseRecord.from_lease(
        {"spec": {"holderIdentity": "x", "renewTime": "2026-01-01T12:00:00.000000Z", "leaseDurationSeconds": 15}}
    )
    assert parsed == LeaseRecord("x", NOW, 15, 0)
    assert LeaseRecord.from_lease({}) == LeaseRecord(None, None, 0, 0)


def test_lease_spec_counts_transitions() -> None:
    taken = lease_spec(LeaseRecord("other", NOW - timedelta(minutes=1), 15, 3), "me", NOW, 15)
    assert taken["holderIdentity"] == "me" and taken["leaseTransitions"] == 4 and "acquireTime" in taken
    renewed = lease_spec(LeaseRecord("me", NOW, 15, 4), "me", NOW, 15)
    assert renewed["leaseTransitions"] == 4 and "acquireTime" not in renewed
    assert lease_spec(None, "me", NOW, 15)["leaseTransitions"] == 0


def test_the_observation_clock_restarts_only_when_the_record_changes() -> None:
    first = observe(None, record(), 100.0)
    assert first == Observation(record(), 100.0)
    assert observe(first, record(), 130.0) is first
    renewed = observe(first, record(renew=NOW + timedelta(seconds=2)), 131.0)
    assert renewed.seen_at == 131.0


@pytest.mark.parametrize(
    "renew",
    [NOW - timedelta(hours=1), NOW + timedelta(hours=1), None],
    ids=["renewTime-long-past", "renewTime-in-the-future", "no-renewTime"],
)
def test_expiry_counts_local_time_since_the_record_was_seen_never_renew_time(renew: datetime | None) -> None:
    seen = Observation(record(renew=renew), 100.0)
    assert not expired(seen, 100.0)
    assert not expired(seen, 114.9)
    assert expired(seen, 115.0)


def test_a_lease_without_holder_is_free() -> None:
    assert expired(Observation(record(holder=None), 100.0), 100.0)


@pytest.mark.parametrize(
    ("observation", "now", "allowed"),
    [
        (None, 0.0, True),
        (Observation(record(holder="me"), 100.0), 100.0, True),
        (Observation(record(holder="other"), 100.0), 114.0, False),
        (Observation(record(holder="other"), 100.0), 115.0, True),
        (Observation(record(holder=None), 100.0), 100.0, True),
    ],
)
def test_may_take(observation: Observation | None, now: float, allowed: bool) -> None:
    assert may_take(observation, "me", now) is allowed


def test_renew_budget() -> None:
    assert renew_budget(None, 5.0, 10) == 0
    assert renew_budget(100.0, 104.0, 10) == 6.0
    assert renew_budget(100.0, 111.0, 10) < 0


@pytest.mark.parametrize(
    "timings",
    [
        {"lease_duration_seconds": 10, "renew_deadline_seconds": 10},
        {"renew_deadline_seconds": 2, "retry_period_seconds": 2.0},
        {"retry_period_seconds": 0},
    ],
)
def test_inconsistent_timings_are_refused(timings: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="must be longer"):
        LeaderElectionConfig(**timings)


def test_default_timings_are_client_gos() -> None:
    settings = LeaderElectionConfig()
    assert (settings.lease_duration_seconds, settings.renew_deadline_seconds, settings.retry_period_seconds) == (
        15,
        10,
        2.0,
    )


class FakeLeases:
    """One Lease with resourceVersion conflicts, as the apiserver keeps it."""

    namespace = "system"

    def __init__(self) -> None:
        self.lease: dict[str, Any] | None = None
        self.version = 0
        self.namespace_exists = True
        self.failure: KubeError | None = None
        self.hang = False
        self.writes: list[str] = []

    def _store(self, body: dict[str, Any]) -> None:
        self.version += 1
        self.lease = copy.deepcopy(body)
        self.lease["metadata"]["resourceVersion"] = str(self.version)
        self.writes.append(str(body["spec"]["holderIdentity"]))

    async def read(self) -> dict[str, Any] | None:
        if self.failure is not None:
            raise self.failure
        return copy.deepcopy(self.lease)

    async def create(self, body: dict[str, Any]) -> None:
        if not self.namespace_exists:
            raise KubeError(404, f'namespaces "{self.namespace}" not found')
        if self.lease is not None:
            raise KubeError(409, "already exists")
        self._store(body)

    async def replace(self, body: dict[str, Any]) -> None:
        if self.hang:
            await asyncio.Event().wait()
        if self.failure is not None:
            raise self.failure
        assert self.lease is not None
        if body["metadata"].get("resourceVersion") != self.lease["metadata"]["resourceVersion"]:
            raise KubeError(409, "the object has been modified")
        self._store(body)


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Elected:
    """An elector on the fake lease, with a clock and a wall clock of its own."""

    def __init__(self, leases: FakeLeases, identity: str, *, skew: timedelta = timedelta(), **timings: Any) -> None:
        self.clock = FakeClock()
        self.lost = 0
        settings = LeaderElectionConfig(name="lease", namespace="system", identity=identity, **timings)
        self.elector = LeaderElector(
            leases, settings, on_lost=self._on_lost, clock=self.clock, wall=lambda: datetime.now(UTC) + skew
        )

    def _on_lost(self) -> None:
        self.lost += 1


async def test_a_standby_waits_a_lease_duration_of_its_own_time_whatever_the_clocks_say() -> None:
    leases = FakeLeases()
    # The leader's wall clock runs an hour behind: its renewTime looks long expired to the standby.
    leader = Elected(leases, "a", skew=-timedelta(hours=1))
    standby = Elected(leases, "b")
    assert await leader.elector.try_acquire()
    assert leader.elector.leading()
    assert not await standby.elector.try_acquire()  # first sight: the lease counts from now
    standby.clock.now += 14.9
    assert not await standby.elector.try_acquire()
    standby.clock.now += 0.1
    assert await standby.elector.try_acquire()
    assert leases.writes == ["a", "b"]
    assert leases.lease is not None and leases.lease["spec"]["leaseTransitions"] == 1


async def test_each_renewal_restarts_the_standbys_count() -> None:
    leases = FakeLeases()
    leader = Elected(leases, "a", skew=timedelta(hours=1))  # renewTime in the standby's future: still no matter
    standby = Elected(leases, "b")
    assert await leader.elector.try_acquire()
    for _ in range(20):
        assert not await standby.elector.try_acquire()
        standby.clock.now += 2
        leader.clock.now += 2
        assert await leader.elector.try_acquire()
    assert not await standby.elector.try_acquire()
    assert leases.writes.count("b") == 0


async def test_the_leader_stops_acting_at_the_renew_deadline_before_a_standby_may_take_over() -> None:
    leases = FakeLeases()
    leader = Elected(leases, "a")
    standby = Elected(leases, "b")
    assert await leader.elector.try_acquire()
    assert not await standby.elector.try_acquire()  # the standby saw the renewal right away
    leader.clock.now += 9.9
    leader.elector.check()
    assert leader.lost == 0
    leader.clock.now += 0.1
    with pytest.raises(NotLeading):
        leader.elector.check()
    assert leader.lost == 1
    standby.clock.now += 10.0
    assert not await standby.elector.try_acquire()  # 5 s of margin: the standby still waits
    with pytest.raises(NotLeading):
        leader.elector.check()
    assert leader.lost == 1  # given up once


async def test_a_write_before_ever_leading_is_refused_without_giving_up() -> None:
    standby = Elected(FakeLeases(), "b")
    with pytest.raises(NotLeading):
        standby.elector.check()
    assert standby.lost == 0


async def test_resuming_after_a_long_pause_gives_up_at_once() -> None:
    leases = FakeLeases()
    leader = Elected(leases, "a")
    assert await leader.elector.try_acquire()
    leader.clock.now += 5
    leader.elector.on_resume()
    assert leader.lost == 0
    leader.clock.now += 30
    leader.elector.on_resume()
    assert leader.lost == 1 and not leader.elector.leading()


async def test_seeing_another_holder_ends_leadership_at_once() -> None:
    leases = FakeLeases()
    leader = Elected(leases, "a")
    assert await leader.elector.try_acquire()
    assert leases.lease is not None
    leases.lease["spec"]["holderIdentity"] = "intruder"
    leader.clock.now += 1
    assert not await leader.elector.try_acquire()
    assert leader.lost == 1 and not leader.elector.leading()


async def test_a_concurrent_writer_wins_with_a_conflict_not_a_split_brain() -> None:
    leases = FakeLeases()
    first = Elected(leases, "a")
    second = Elected(leases, "b")
    assert await first.elector.try_acquire()
    assert leases.lease is not None
    leases.lease["spec"]["holderIdentity"] = None  # released
    original_replace = leases.replace

    async def racing_replace(body: dict[str, Any]) -> None:
        leases.version += 1  # someone else wrote in between
        assert leases.lease is not None
        leases.lease["metadata"]["resourceVersion"] = str(leases.version)
        await original_replace(body)

    leases.replace = racing_replace  # type: ignore[method-assign]
    assert not await second.elector.try_acquire()
    assert not second.elector.leading()


async def test_renewal_with_its_retries_ends_within_the_renew_deadline() -> None:
    leases = FakeLeases()
    timings = {"lease_duration_seconds": 3, "renew_deadline_seconds": 2, "retry_period_seconds": 0.2}
    settings = LeaderElectionConfig(name="lease", namespace="system", identity="a", **timings)
    lost: list[float] = []
    elector = LeaderElector(leases, settings, on_lost=lambda: lost.append(time.monotonic()))
    assert await elector.try_acquire()
    acquired = time.monotonic()
    leases.hang = True  # the apiserver takes every renewal and never answers
    holding = asyncio.create_task(elector.hold())
    await asyncio.wait_for(holding, timeout=5)
    assert lost and lost[0] - acquired <= 2 + 0.3
    assert not elector.leading()


async def test_renewal_retries_every_retry_period_until_the_apiserver_answers() -> None:
    leases = FakeLeases()
    timings = {"lease_duration_seconds": 3, "renew_deadline_seconds": 2, "retry_period_seconds": 0.1}
    settings = LeaderElectionConfig(name="lease", namespace="system", identity="a", **timings)
    elector = LeaderElector(leases, settings, on_lost=lambda: None)
    assert await elector.try_acquire()
    leases.failure = KubeError(503, "unavailable")
    asyncio.get_running_loop().call_later(0.35, setattr, leases, "failure", None)
    assert await elector.renew()
    assert elector.leading() and leases.writes == ["a", "a"]


async def test_a_missing_lease_namespace_is_named() -> None:
    leases = FakeLeases()
    leases.namespace_exists = False
    elector = Elected(leases, "a").elector
    with pytest.raises(LeaseNamespaceMissing) as raised:
        await asyncio.wait_for(elector.acquire(), timeout=5)
    message = str(raised.value)
    assert "'system'" in message and "kubectl create namespace system" in message and "--lease-namespace" in message


async def test_release_frees_the_lease_and_later_writes_are_refused_quietly() -> None:
    leases = FakeLeases()
    leader = Elected(leases, "a")
    assert await leader.elector.try_acquire()
    await leader.elector.release()
    assert leases.lease is not None and leases.lease["spec"]["holderIdentity"] is None
    with pytest.raises(NotLeading):
        leader.elector.check()
    assert leader.lost == 0
    standby = Elected(leases, "b")
    assert await standby.elector.try_acquire()  # no holder: no need to wait


async def test_the_fenced_client_checks_writes_only() -> None:
    checks: list[str] = []

    def refuse() -> None:
        checks.append("write")
        raise NotLeading()

    api = FencedApiClient(client.Configuration(host="http://127.0.0.1:9"), refuse)
    try:
        for method in ("POST", "PUT", "PATCH", "DELETE"):
            with pytest.raises(NotLeading):
                api.request(method, "http://127.0.0.1:9/api/v1/namespaces/x/pods")
        read = api.request("GET", "http://127.0.0.1:9/api/v1/namespaces/x/pods")
        read.close()  # never sent: only that no check ran matters
        assert checks == ["write"] * 4
    finally:
        await api.close()


def test_not_leading_is_a_failed_request() -> None:
    error = NotLeading()
    assert error.status == 0 and "leader lease" in str(error.reason)
