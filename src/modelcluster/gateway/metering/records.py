"""One usage record: what an answered or failed inference request used and cost.

The gateway writes one per inference request (:class:`~.ledger.Ledger` ``record``); closed models (answered by
a provider) record their token counts with ``cost`` 0 through the same hook, as the provider bills the caller.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import UTC, datetime

#: The largest token count a row holds (the ledger's integer columns are 32-bit on PostgreSQL): a peer's
#: larger figure is kept as this, so that one row can never stop the ledger's writes.
MAX_TOKENS = 2**31 - 1


def request_id(now: datetime) -> str:
    """A request's id: 32 hex digits, the first 12 its start in milliseconds since the epoch, the rest random.

    Ids made one after another sort by time, so the ledger's unique index on them grows at its end instead of
    touching a random page per row (as UUIDv7 orders its ids).
    """
    millis = int(now.timestamp() * 1000) & 0xFFFF_FFFF_FFFF
    return f"{millis:012x}{os.urandom(10).hex()}"


@dataclass
class UsageRecord:
    """A row of the usage ledger. ``cluster`` names the ModelCluster (``namespace/name``) or the provider."""

    request_id: str
    tenant: str
    key_id: str
    model: str
    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    task: str = ""
    cluster: str = ""
    meter: str = ""
    meter_price: float = 0.0
    inference_seconds: float = 0.0
    tokens_in: int = 0
    tokens_out: int = 0
    cost: float = 0.0
    status: int = 0
    duration_seconds: float = 0.0

    def values(self) -> tuple[object, ...]:
        """The fields in their declared order (:data:`~.ledger.ROW_COLUMNS`)."""
        return (
            self.request_id,
            self.tenant,
            self.key_id,
            self.model,
            self.started,
            self.task,
            self.cluster,
            self.meter,
            self.meter_price,
            self.inference_seconds,
            self.tokens_in,
            self.tokens_out,
            self.cost,
            self.status,
            self.duration_seconds,
        )

    def row(self) -> dict[str, object]:
        return {
            "request_id": self.request_id,
            "tenant": self.tenant,
            "key_id": self.key_id,
            "model": self.model,
            "task": self.task,
            "cluster": self.cluster,
            "meter": self.meter,
            "meter_price": self.meter_price,
            "inference_seconds": self.inference_seconds,
            "tokens_in": self.tokens_in,
            "tokens_out": self.tokens_out,
            "cost": self.cost,
            "status": self.status,
            "started": self.started,
            "duration_seconds": self.duration_seconds,
        }


@dataclass
class UsageDraft:
    """What a route learns about its request while serving it; the metering middleware makes it a record."""

    request_id: str
    started: datetime
    started_monotonic: float
    model: str = ""
    task: str = ""
    cluster: str = ""
    meter: str = ""
    meter_price: float = 0.0
    inference_seconds: float = 0.0
    tokens_in: int = 0
    tokens_out: int = 0

    @property
    def cost(self) -> float:
        return self.meter_price * self.inference_seconds

    def record(self, tenant: str, key_id: str, status: int, duration_seconds: float) -> UsageRecord:
        return UsageRecord(
            request_id=self.request_id,
            tenant=tenant,
            key_id=key_id,
            model=self.model,
            started=self.started,
            task=self.task,
            cluster=self.cluster,
            meter=self.meter,
            meter_price=self.meter_price,
            inference_seconds=self.inference_seconds,
            tokens_in=min(self.tokens_in, MAX_TOKENS),
            tokens_out=min(self.tokens_out, MAX_TOKENS),
            cost=self.cost,
            status=status,
            duration_seconds=duration_seconds,
        )
