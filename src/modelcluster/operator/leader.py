"""Leader election on a coordination.k8s.io Lease: only the holder reconciles.

kopf's own peering pauses every operator when equal peers meet; a Lease gives
one active replica and hot standbys instead. Timings follow client-go: a lease
lasts 15 s, the holder renews every 2 s and gives up leadership (the process
exits) when it could not renew for 10 s.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from modelcluster.operator.config import LeaderElectionConfig
from modelcluster.operator.kube import Kube, KubeError

logger = logging.getLogger(__name__)


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


def expired(record: LeaseRecord, now: datetime) -> bool:
    """Whether the holder missed its renewal (or nobody holds the lease)."""
    if record.holder is None or record.renew_time is None:
        return True
    return now >= record.renew_time + timedelta(seconds=record.duration_seconds)


def may_take(record: LeaseRecord | None, identity: str, now: datetime) -> bool:
    """Whether ``identity`` may write itself into the lease now."""
    return record is None or record.holder == identity or expired(record, now)


def micro_time(moment: datetime) -> str:
    """A ``MicroTime`` as the apiserver parses it (always six fraction digits, UTC)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def lease_spec(record: LeaseRecord | None, identity: str, now: datetime, duration: int) -> dict[str, Any]:
    """The spec written when ``identity`` takes or renews the lease."""
    keeps = record is not None and record.holder == identity
    acquire_time = now if not keeps else None
    spec: dict[str, Any] = {
        "holderIdentity": identity,
        "leaseDurationSeconds": duration,
        "renewTime": micro_time(now),
        "leaseTransitions": (record.transitions if record else 0) + (0 if keeps or record is None else 1),
    }
    if acquire_time is not None:
        spec["acquireTime"] = micro_time(acquire_time)
    return spec


class LeaderElector:
    """Acquire, renew and release one Lease."""

    def __init__(self, kube: Kube, settings: LeaderElectionConfig) -> None:
        self._api = kube.coordination
        self._kube = kube
        self._settings = settings

    async def try_acquire(self) -> bool:
        """One attempt to take or renew the lease; True when this process holds it afterwards."""
        settings = self._settings
        now = datetime.now(UTC)
        try:
            lease = await self._kube.call(self._api.read_namespaced_lease(settings.name, settings.namespace))
        except KubeError as error:
            if error.status != 404:
                raise
            body: Any = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": settings.name, "namespace": settings.namespace},
                "spec": lease_spec(None, settings.identity, now, settings.lease_duration_seconds),
            }
            return await self._write(self._api.create_namespaced_lease(settings.namespace, body))
        plain: Any = self._kube._plain(lease)
        record = LeaseRecord.from_lease(plain)
        if not may_take(record, settings.identity, now):
            return False
        plain["spec"] = {
            **(plain.get("spec") or {}),
            **lease_spec(record, settings.identity, now, settings.lease_duration_seconds),
        }
        # ``metadata.resourceVersion`` stays: a concurrent writer makes this a 409, not a split brain.
        return await self._write(self._api.replace_namespaced_lease(settings.name, settings.namespace, plain))

    async def _write(self, request: Any) -> bool:
        try:
            await self._kube.call(request)
        except KubeError as error:
            if error.status == 409:
                return False
            raise
        return True

    async def acquire(self) -> None:
        """Block until this process holds the lease."""
        logger.info(
            "waiting for leadership of lease %s/%s as %s",
            self._settings.namespace,
            self._settings.name,
            self._settings.identity,
        )
        while True:
            try:
                if await self.try_acquire():
                    logger.info("acquired leadership")
                    return
            except KubeError as error:
                logger.warning("leader election: %s", error)
            await asyncio.sleep(self._settings.retry_period_seconds * (1 + random.random() * 0.2))

    async def hold(self, on_lost: Callable[[], None]) -> None:
        """Renew until cancelled; call ``on_lost`` when renewal failed for the whole renew deadline."""
        loop = asyncio.get_running_loop()
        last_renewed = loop.time()
        while True:
            await asyncio.sleep(self._settings.retry_period_seconds)
            try:
                renewed = await asyncio.wait_for(self.try_acquire(), self._settings.renew_deadline_seconds)
            except (KubeError, TimeoutError) as error:
                logger.warning("renewing the lease failed: %s", error)
                renewed = False
            if renewed:
                last_renewed = loop.time()
            elif loop.time() - last_renewed >= self._settings.renew_deadline_seconds:
                logger.critical("lost leadership of lease %s/%s", self._settings.namespace, self._settings.name)
                on_lost()
                return

    async def release(self) -> None:
        """Give the lease up (on a clean shutdown) so a standby takes over at once."""
        settings = self._settings
        try:
            lease: Any = self._kube._plain(
                await self._kube.call(self._api.read_namespaced_lease(settings.name, settings.namespace))
            )
            if (lease.get("spec") or {}).get("holderIdentity") != settings.identity:
                return
            lease["spec"]["holderIdentity"] = None
            lease["spec"]["leaseDurationSeconds"] = 1
            await self._kube.call(self._api.replace_namespaced_lease(settings.name, settings.namespace, lease))
        except KubeError as error:
            logger.warning("could not release the lease: %s", error)
