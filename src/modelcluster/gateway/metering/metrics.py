"""The metering series on the gateway's registry: usage per tenant and model, and the ledger's health.

Label values are bounded: ``model`` is a catalog id or ``other`` (never a caller's spelling), ``tenant`` a tenant
that holds an API key.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

OTHER_MODEL = "other"
USAGE_LABELS = ("tenant", "model")


class MeteringMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.requests = Counter(
            "modelcluster_usage_requests", "Inference requests answered, by tenant and model.", USAGE_LABELS, registry=r
        )
        self.inference_seconds = Counter(
            "modelcluster_usage_inference_seconds",
            "Seconds of inference on model pods, by tenant and model.",
            USAGE_LABELS,
            registry=r,
        )
        self.tokens = Counter(
            "modelcluster_usage_tokens",
            "Tokens of generations, by tenant, model and direction (in: prompt, out: completion).",
            (*USAGE_LABELS, "direction"),
            registry=r,
        )
        self.cost = Counter(
            "modelcluster_usage_cost_dollars",
            "Cost of inference in US dollars, by tenant and model.",
            USAGE_LABELS,
            registry=r,
        )
        self.ledger_buffered = Gauge(
            "modelcluster_ledger_buffered_rows", "Usage rows waiting to be written to the ledger.", registry=r
        )
        self.ledger_written = Counter(
            "modelcluster_ledger_written_rows", "Usage rows written to the ledger.", registry=r
        )
        self.ledger_dropped = Counter(
            "modelcluster_ledger_dropped_rows",
            "Usage rows dropped because the ledger's buffer was full (the database was away too long).",
            registry=r,
        )
        self.ledger_rejected = Counter(
            "modelcluster_ledger_rejected_rows",
            "Usage rows the database refused for their data (written alone, then dropped).",
            registry=r,
        )
        self.ledger_errors = Counter(
            "modelcluster_ledger_write_errors", "Failed writes of a batch to the ledger (retried).", registry=r
        )
        self._children: dict[tuple[str, str], tuple[Any, Any, Any, Any, Any]] = {}

    def observe(self, tenant: str, model: str, seconds: float, tokens_in: int, tokens_out: int, cost: float) -> None:
        key = (tenant, model)
        children = self._children.get(key)
        if children is None:
            children = (
                self.requests.labels(tenant, model),
                self.inference_seconds.labels(tenant, model),
                self.tokens.labels(tenant, model, "in"),
                self.tokens.labels(tenant, model, "out"),
                self.cost.labels(tenant, model),
            )
            self._children[key] = children
        requests, inference, tokens_in_child, tokens_out_child, cost_child = children
        requests.inc()
        inference.inc(seconds)
        tokens_in_child.inc(tokens_in)
        tokens_out_child.inc(tokens_out)
        cost_child.inc(cost)

    def forget_tenant(self, tenant: str) -> None:
        for key in [key for key in self._children if key[0] == tenant]:
            del self._children[key]
            for metric in (self.requests, self.inference_seconds, self.cost):
                metric.remove(*key)
            for direction in ("in", "out"):
                self.tokens.remove(*key, direction)


def model_label(known: Callable[[str], str | None], model_id: str) -> str:
    """The catalog's spelling of ``model_id``, or :data:`OTHER_MODEL` for a model the catalog does not list."""
    return known(model_id) or OTHER_MODEL
