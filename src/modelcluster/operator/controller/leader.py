"""Leader election on a coordination.k8s.io Lease: only the holder reconciles.

kopf's own peering pauses every operator when equal peers meet; a Lease gives one
active replica and hot standbys instead. The rules are client-go's:

- a lease lasts 15 s (``leaseDurationSeconds``); the holder renews it every 2 s;
- a standby judges expiry on its own clock: it notes (monotonic) when it last saw the
  lease record change, and takes the lease only once ``leaseDurationSeconds`` have passed
  locally since then. The holder's ``renewTime`` is never compared with the local wall
  clock, so clock skew between machines cannot make a live lease look expired;
- the holder stops acting when it has not renewed within the renew deadline (10 s) of
  the start of its last successful renewal, retries included. From then on every write
  through :class:`FencedApiClient` is refused and the process exits. The renew deadline
  is shorter than the lease, so the old leader has stopped before any standby may
  consider the lease expired, even after the process was paused (``SIGSTOP``, a frozen
  VM) and resumes with work queued.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, cast

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from modelcluster.kube.client import Kube, KubeError
from modelcluster.kube.objects import Body, rfc3339_micro
from modelcluster.operator.config import LEASE_RETRY_JITTER, LeaderElectionConfig

logger = logging.getLogger(__name__)

Clock = Callable[[], float]
#: HTTP methods that change nothing: allowed whether or not this process leads.
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class LeaseRecord:
    """The parts of a Lease's spec that decide who leads."""

    holder: str | None
    renew_time: datetime | None
    duration_seconds: int
    transitions: int

    @classmethod
    def from_lease(cls, lease: Mapping[str, Any]) -> LeaseRecord:
        spec = lease.get("spec") or {}
        renew = spec.get("renewTime")
        return cls(
            holder=spec.get("holderIdentity") or None,
            renew_time=datetime.fromisoformat(renew.replace("Z", "+00:00")) if isinstance(renew, str) else renew,
            duration_seconds=int(spec.get("leaseDurationSeconds") or 0),
            transitions=int(spec.get("leaseTransitions") or 0),
        )


@dataclass(frozen=True)
class Observation:
    """A lease record and when (local monotonic seconds) it was first seen in this state."""

    record: LeaseRecord
    seen_at: float


def observe(previous: Observation | None, record: LeaseRecord, now: float) -> Observation:
    """The observation after reading ``record`` at local time ``now``: its clock restarts only on a change.

    Every renewal writes a new ``renewTime``, so an unchanged record means the holder has not
    renewed since ``seen_at``, whatever its ``renewTime`` says.
    """
    if previous is not None and previous.record == record:
        return previous
    return Observation(record, now)


def expired(observation: Observation, now: float) -> bool:
    """Whether nobody holds the lease, or it has not changed for its whole duration of local time."""
    record = observation.record
    return record.holder is None or now >= observation.seen_at + record.duration_seconds


def may_take(observation: Observation | None, identity: str, now: float) -> bool:
    """Whether ``identity`` may write itself into the lease now (nothing seen: the lease does not exist)."""
    return observation is None or observation.record.holder == identity or expired(observation, now)


def renew_budget(renewed_at: float | None, now: float, renew_deadline: float) -> float:
    """Seconds the holder may still act (and try to renew); zero or less: stop now."""
    if renewed_at is None:
        return 0.0
    return renewed_at + renew_deadline - now


def micro_time(moment: datetime) -> str:
    """A ``MicroTime`` as the apiserver parses it (always six fraction digits, UTC)."""
    return rfc3339_micro(moment)


def lease_spec(record: LeaseRecord | None, identity: str, now: datetime, duration: int) -> dict[str, Any]:
    """The spec written when ``identity`` takes or renews the lease (``now`` is for people reading it)."""
    keeps = record is not None and record.holder == identity
    spec: dict[str, Any] = {
        "holderIdentity": identity,
        "leaseDurationSeconds": duration,
        "renewTime": micro_time(now),
        "leaseTransitions": (record.transitions if record else 0) + (0 if keeps or record is None else 1),
    }
    if not keeps:
        spec["acquireTime"] = micro_time(now)
    return spec


class LeaseNamespaceMissing(Exception):
    """The namespace meant to hold the Lease does not exist: waiting cannot help."""

    def __init__(self, namespace: str) -> None:
        super().__init__(
            f"leader election: the lease namespace {namespace!r} does not exist. "
            f"Create it (kubectl create namespace {namespace}), choose another with --lease-namespace, "
            "or run a single operator with --no-leader-elect."
        )
        self.namespace = namespace


class NotLeading(ApiException):
    """A write refused before it was sent: this process no longer (or not yet) holds the lease.

    An ``ApiException`` with status 0, so callers handle it as any request that never reached the server.
    """

    def __init__(self) -> None:
        super().__init__(status=0, reason="write refused: this operator does not hold the leader lease")


class LeaseApi(Protocol):
    """Read, create and replace the one Lease (plain JSON)."""

    @property
    def namespace(self) -> str: ...

    async def read(self) -> Body | None: ...

    async def create(self, body: Body) -> None: ...

    async def replace(self, body: Body) -> None: ...


class LeaseStore:
    """:class:`LeaseApi` on the apiserver."""

    def __init__(self, kube: Kube, namespace: str, name: str) -> None:
        self._kube = kube
        self._api = kube.coordination
        self._namespace = namespace
        self._name = name

    @property
    def namespace(self) -> str:
        return self._namespace

    async def read(self) -> Body | None:
        return await self._kube.maybe(
            self._api.read_namespaced_lease(self._name, self._namespace, _preload_content=False)
        )

    async def create(self, body: Body) -> None:
        await self._kube.json(
            self._api.create_namespaced_lease(self._namespace, cast(Any, body), _preload_content=False)
        )

    async def replace(self, body: Body) -> None:
        await self._kube.json(
            self._api.replace_namespaced_lease(self._name, self._namespace, cast(Any, body), _preload_content=False)
        )


def _wall_now() -> datetime:
    return datetime.now(UTC)


class LeaderElector:
    """Acquire, renew and release one Lease; :meth:`check` fences every write of the process."""

    def __init__(
        self,
        lease: LeaseApi,
        settings: LeaderElectionConfig,
        *,
        on_lost: Callable[[], None],
        clock: Clock = time.monotonic,
        wall: Callable[[], datetime] = _wall_now,
    ) -> None:
        self._lease = lease
        self._settings = settings
        self._on_lost = on_lost
        self._clock = clock
        self._wall = wall
        self._observed: Observation | None = None
        self._renewed_at: float | None = None
        self._led = False
        self._stopped = False

    def leading(self) -> bool:
        """Whether this process may act now: it renewed within the renew deadline (by its own clock)."""
        return (
            not self._stopped
            and renew_budget(self._renewed_at, self._clock(), self._settings.renew_deadline_seconds) > 0
        )

    def check(self) -> None:
        """Return when this process may write; otherwise give leadership up and raise :class:`NotLeading`."""
        if self.leading():
            return
        if self._led:
            self._lose("the renew deadline passed")
        raise NotLeading()

    def on_resume(self) -> None:
        """After the process was stopped and continued: give up at once if the renew deadline passed meanwhile."""
        if self._led and not self.leading():
            self._lose("the process was paused past the renew deadline")

    def _lose(self, why: str) -> None:
        self._renewed_at = None
        if self._stopped:
            return
        self._stopped = True
        logger.critical("lost leadership of lease %s/%s: %s; stopping", self._lease.namespace, self._settings.name, why)
        self._on_lost()

    async def try_acquire(self) -> bool:
        """One attempt to take or renew the lease; True when this process holds it afterwards."""
        settings = self._settings
        lease = await self._lease.read()
        now = self._clock()
        if lease is None:
            body: Body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": settings.name, "namespace": self._lease.namespace},
                "spec": lease_spec(None, settings.identity, self._wall(), settings.lease_duration_seconds),
            }
            return await self._write(body, create=True)
        record = LeaseRecord.from_lease(lease)
        self._observed = observe(self._observed, record, now)
        if record.holder is not None and record.holder != settings.identity and self._renewed_at is not None:
            # Someone else holds it: whatever our own deadline says, stop acting now.
            self._lose(f"the lease is held by {record.holder}")
        if not may_take(self._observed, settings.identity, now):
            return False
        # ``metadata.resourceVersion`` stays: a concurrent writer makes this a 409, not a split brain.
        lease["spec"] = {
            **(lease.get("spec") or {}),
            **lease_spec(record, settings.identity, self._wall(), settings.lease_duration_seconds),
        }
        return await self._write(lease, create=False)

    async def _write(self, body: Body, *, create: bool) -> bool:
        sent = self._clock()  # the lease may count from any moment after this one
        try:
            if create:
                await self._lease.create(body)
            else:
                await self._lease.replace(body)
        except KubeError as error:
            if error.status == 409:
                return False
            if create and error.status == 404:
                raise LeaseNamespaceMissing(self._lease.namespace) from error
            raise
        self._observed = Observation(LeaseRecord.from_lease(body), sent)
        if not self._stopped:
            self._renewed_at = sent
            self._led = True
        return not self._stopped

    def _retry_period(self) -> float:
        return self._settings.retry_period_seconds * (1 + random.random() * LEASE_RETRY_JITTER)

    async def acquire(self) -> None:
        """Block until this process holds the lease (:class:`LeaseNamespaceMissing` ends the wait)."""
        settings = self._settings
        logger.info(
            "waiting for leadership of lease %s/%s as %s", self._lease.namespace, settings.name, settings.identity
        )
        last_error = ""
        while True:
            try:
                if await self.try_acquire():
                    logger.info("acquired leadership of lease %s/%s", self._lease.namespace, settings.name)
                    return
            except KubeError as error:
                if str(error) != last_error:  # the same failure every 2 s says nothing new
                    logger.warning("leader election: %s", error)
                    last_error = str(error)
            await asyncio.sleep(self._retry_period())

    async def renew(self) -> bool:
        """Renew, retrying every retry period, until it worked or the renew deadline has passed."""
        deadline = self._settings.renew_deadline_seconds
        while True:
            budget = renew_budget(self._renewed_at, self._clock(), deadline)
            if budget <= 0:
                return False
            try:
                async with asyncio.timeout(budget):
                    if await self.try_acquire():
                        return True
            except (KubeError, TimeoutError) as error:
                logger.warning("renewing the lease failed: %s", error or type(error).__name__)
            budget = renew_budget(self._renewed_at, self._clock(), deadline)
            if budget <= 0:
                return False
            await asyncio.sleep(min(self._settings.retry_period_seconds, budget))

    async def hold(self) -> None:
        """Renew every retry period until cancelled; give leadership up when a renewal misses the deadline."""
        while True:
            await asyncio.sleep(self._settings.retry_period_seconds)
            if not await self.renew():
                self._lose("the lease could not be renewed within the renew deadline")
                return

    async def release(self) -> None:
        """Give the lease up (on a clean shutdown) so a standby takes over at once."""
        if not self.leading():
            return
        # From here on nothing is written on the lease's behalf; a late write is refused, not fatal.
        self._renewed_at = None
        self._stopped = True
        try:
            lease = await self._lease.read()
            if lease is None or (lease.get("spec") or {}).get("holderIdentity") != self._settings.identity:
                return
            lease["spec"]["holderIdentity"] = None
            lease["spec"]["leaseDurationSeconds"] = 1
            await self._lease.replace(lease)
        except KubeError as error:
            logger.warning("could not release the lease: %s", error)


class FencedApiClient(client.ApiClient):
    """An ``ApiClient`` that asks ``check`` before every write, so a process that lost its lease writes nothing.

    The check runs synchronously just before the request is sent, on the local monotonic clock:
    a process resuming from a pause finds its deadline passed before its first write leaves.
    """

    def __init__(self, configuration: client.Configuration, check: Callable[[], None]) -> None:
        super().__init__(configuration)
        self._check = check

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        if method.upper() not in READ_METHODS:
            self._check()
        return super().request(method, url, *args, **kwargs)
