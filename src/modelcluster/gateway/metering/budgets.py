"""Budgets: a tenant's spend in its current period against its budget, answered from memory.

:func:`period_bounds` is the pure calendar (UTC; weeks start on Monday). :class:`SpendCache` keeps each budgeted
tenant's spend: the ledger's sum for the period (re-read every few seconds by :meth:`SpendCache.run`, so the
spend of every gateway replica counts), plus what this replica recorded since (not written yet, or written after
the last read). The hot path (:meth:`SpendCache.exceeded`) makes no database call.

Where budgets come from is a :class:`BudgetSource`: the Tenant resources (:class:`TenantBudgets`), then the
gateway's settings (:class:`StaticBudgets`).
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from modelcluster.api.errors import PaymentRequired
from modelcluster.gateway.metering.ledger import DATABASE_ERRORS
from modelcluster.gateway.metering.records import UsageRecord
from modelcluster.gateway.metering.schema import usage
from modelcluster.gateway.tenants import TenantTable

logger = logging.getLogger(__name__)

Period = Literal["day", "week", "month"]


class Budget(BaseModel):
    """What a tenant may spend per period, in US dollars."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    amount: float = Field(ge=0, description="US dollars per period.")
    period: Period = Field(default="month", description="day, week (from Monday) or month, in UTC.")


class BudgetSource(Protocol):
    """Where the gateway learns the tenants' budgets."""

    def budget_of(self, tenant: str) -> Budget | None: ...

    def budgeted(self) -> Iterable[str]:
        """Every tenant that has a budget."""
        ...


@dataclass(frozen=True)
class StaticBudgets:
    """Budgets given by the gateway's settings (``MODELCLUSTER_GATEWAY_BUDGETS``, JSON ``{tenant: budget}``)."""

    budgets: Mapping[str, Budget]

    def budget_of(self, tenant: str) -> Budget | None:
        return self.budgets.get(tenant)

    def budgeted(self) -> Iterable[str]:
        return self.budgets.keys()


@dataclass(frozen=True)
class TenantBudgets:
    """Budgets from the Tenant resources (the gateway's Tenant table), by the tenant's namespace; then ``fallback``.

    The usage of a request is the namespace's its key names, so a Tenant's budget covers its namespace.
    """

    tenants: TenantTable
    fallback: BudgetSource = StaticBudgets({})

    def budget_of(self, tenant: str) -> Budget | None:
        found = self.tenants.for_namespace(tenant)
        if found is not None and found.spec.budget is not None:
            given = found.spec.budget
            return Budget(amount=float(given.amount), period=given.period.value)
        return self.fallback.budget_of(tenant)

    def budgeted(self) -> Iterable[str]:
        names = {tenant.namespace for tenant in self.tenants.all() if tenant.spec.budget is not None}
        return sorted(names | set(self.fallback.budgeted()))


def period_bounds(period: Period, now: datetime) -> tuple[datetime, datetime]:
    """The start of the period holding ``now`` and the start of the next one (when the budget resets), in UTC."""
    now = now.astimezone(UTC)
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        return day, day + timedelta(days=1)
    if period == "week":
        start = day - timedelta(days=day.weekday())
        return start, start + timedelta(days=7)
    start = day.replace(day=1)
    following = (
        start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
    )
    return start, following


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def budget_message(tenant: str, budget: Budget, spent: float, resets: datetime) -> str:
    return (
        f"Payment Required: the budget of tenant {tenant} (${budget.amount:g} per {budget.period}) is spent "
        f"(${spent:.6f} used this {budget.period}); it resets at {rfc3339(resets)}"
    )


class SpendCache:
    def __init__(
        self,
        source: BudgetSource,
        engine: AsyncEngine | None,
        *,
        refresh_s: float = 2.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        write_lock: asyncio.Lock | None = None,
    ) -> None:
        self.source = source
        #: The ledger's write lock: held during a read, no batch of this replica commits while the sum is taken.
        self.write_lock = write_lock or asyncio.Lock()
        self.engine = engine
        self.refresh_s = refresh_s
        self.clock = clock
        self._stored: dict[str, float] = {}  # the ledger's sum for the tenant's period, at the last read
        self._periods: dict[str, datetime] = {}  # the period start that sum is for
        self._unwritten: defaultdict[str, float] = defaultdict(float)
        self._written_since_read: defaultdict[str, float] = defaultdict(float)
        self.refreshed = asyncio.Event()

    def spent(self, tenant: str) -> float:
        return self._stored.get(tenant, 0.0) + self._unwritten[tenant] + self._written_since_read[tenant]

    def exceeded(self, tenant: str) -> PaymentRequired | None:
        """The 402 for ``tenant`` when its spend this period has reached its budget; ``None`` otherwise."""
        budget = self.source.budget_of(tenant)
        if budget is None:
            return None
        spent = self.spent(tenant)
        if spent < budget.amount:
            return None
        _, resets = period_bounds(budget.period, self.clock())
        return PaymentRequired(budget_message(tenant, budget, spent, resets))

    def recorded(self, record: UsageRecord) -> None:
        """A row this replica recorded (not yet written)."""
        if record.cost:
            self._unwritten[record.tenant] += record.cost

    def written(self, batch: Sequence[UsageRecord]) -> None:
        """Rows of this replica the ledger now holds."""
        for record in batch:
            if record.cost:
                self._unwritten[record.tenant] -= record.cost
                self._written_since_read[record.tenant] += record.cost

    async def refresh(self) -> None:
        """Read every budgeted tenant's spend in its current period from the ledger."""
        if self.engine is None:
            return
        now = self.clock()
        starts: dict[datetime, list[str]] = defaultdict(list)
        for tenant in self.source.budgeted():
            budget = self.source.budget_of(tenant)
            if budget is not None:
                starts[period_bounds(budget.period, now)[0]].append(tenant)
        sums: dict[str, float] = {}
        async with self.write_lock, self.engine.connect() as connection:
            read_from = dict(self._written_since_read)
            for start, tenants in starts.items():
                query = (
                    select(usage.c.tenant, func.coalesce(func.sum(usage.c.cost), 0.0))
                    .where(usage.c.tenant.in_(tenants), usage.c.started >= start)
                    .group_by(usage.c.tenant)
                )
                found = {str(tenant): float(total) for tenant, total in (await connection.execute(query)).all()}
                for tenant in tenants:
                    sums[tenant] = found.get(tenant, 0.0)
                    self._periods[tenant] = start
        for tenant, total in sums.items():
            self._stored[tenant] = total
            # What this replica wrote before the read is in the sum now (none of its batches commits during it).
            self._written_since_read[tenant] -= read_from.get(tenant, 0.0)
        self.refreshed.set()

    async def run(self) -> None:
        """Refresh every ``refresh_s`` seconds while the gateway runs; a database away keeps the last sums."""
        while True:
            try:
                async with asyncio.timeout(max(self.refresh_s * 5, 10.0)):
                    await self.refresh()
            except DATABASE_ERRORS as error:
                logger.warning("budgets: cannot read spend from the ledger: %s", str(error).splitlines()[0][:200])
            await asyncio.sleep(self.refresh_s)
