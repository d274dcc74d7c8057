"""The gateway's metering: the prices of answers, the usage rows of every inference request, and budgets.

:meth:`Metering.record` is the one hook for usage: the model routes call it (through :func:`meter_request`)
and so may any other answerer, such as a closed-model provider (``cost`` 0, its token counts).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from modelcluster.api.errors import PaymentRequired
from modelcluster.catalog import Catalog
from modelcluster.catalog.pricing import Meter, meter_of
from modelcluster.gateway.metering.budgets import BudgetSource, SpendCache, StaticBudgets
from modelcluster.gateway.metering.ledger import Ledger
from modelcluster.gateway.metering.metrics import MeteringMetrics, model_label
from modelcluster.gateway.metering.records import UsageRecord

logger = logging.getLogger(__name__)

#: Meters kept by (model id, task); the catalog is fixed for the process, so they never go stale.
METERS_KEPT = 4096


@dataclass
class Metering:
    catalog: Catalog
    metrics: MeteringMetrics
    ledger: Ledger | None = None
    budgets: BudgetSource = field(default_factory=lambda: StaticBudgets({}))
    spend: SpendCache = field(init=False)
    budget_refresh_s: float = 2.0
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _meters: dict[tuple[str, str], Meter] = field(default_factory=dict)

    def __post_init__(self) -> None:
        engine = self.ledger.engine if self.ledger is not None else None
        lock = self.ledger.write_lock if self.ledger is not None else None
        self.spend = SpendCache(self.budgets, engine, refresh_s=self.budget_refresh_s, write_lock=lock)
        if self.ledger is not None:
            self.ledger.on_commit = self.spend.written

    def meter(self, model_id: str, task: str) -> Meter:
        """The meter of ``model_id`` serving ``task`` (:func:`meter_of`, worked out once per pair)."""
        pair = (model_id, task)
        known = self._meters.get(pair)
        if known is None:
            if len(self._meters) >= METERS_KEPT:
                self._meters.clear()
            known = self._meters[pair] = meter_of(self.catalog, model_id, task)
        return known

    def check_budget(self, tenant: str) -> None:
        """402 when ``tenant`` has spent its budget for this period (from memory, no database call)."""
        refusal: PaymentRequired | None = self.spend.exceeded(tenant)
        if refusal is not None:
            raise refusal

    def record(self, record: UsageRecord) -> None:
        """Count ``record`` in the metrics and the tenant's spend, and queue it for the ledger; never fails."""
        known = self.catalog.model(record.model)
        label = model_label(lambda _: known.id if known is not None else None, record.model)
        self.metrics.observe(
            record.tenant, label, record.inference_seconds, record.tokens_in, record.tokens_out, record.cost
        )
        self.spend.recorded(record)
        if self.ledger is not None:
            self.ledger.record(record)

    def start(self) -> None:
        if self.ledger is not None:
            self.ledger.start()
            self._tasks.append(asyncio.create_task(self.spend.run(), name="budget-spend"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.ledger is not None:
            await self.ledger.stop()
