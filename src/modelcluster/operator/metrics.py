"""Prometheus metrics with controller-runtime's names, on their own registry and port."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

# controller-runtime's buckets for reconcile time.
RECONCILE_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.15,
    0.2,
    0.25,
    0.3,
    0.35,
    0.4,
    0.45,
    0.5,
    0.6,
    0.7,
    0.8,
    0.9,
    1.0,
    1.25,
    1.5,
    1.75,
    2.0,
    2.5,
    3.0,
    3.5,
    4.0,
    4.5,
    5.0,
    6.0,
    7.0,
    8.0,
    9.0,
    10.0,
    15.0,
    20.0,
    25.0,
    30.0,
    40.0,
    50.0,
    60.0,
)

SUCCESS = "success"
ERROR = "error"
REQUEUE_AFTER = "requeue_after"


@dataclass(frozen=True)
class ReconcileMetrics:
    registry: CollectorRegistry
    total: Counter
    errors: Counter
    time: Histogram
    leader: Gauge
    autoscaler_tick: Histogram
    autoscaler_decisions: Counter
    autoscaler_target: Gauge
    cold_start: Histogram
    autoscaler_scrapes: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry | None = None) -> ReconcileMetrics:
        registry = registry if registry is not None else CollectorRegistry()
        return cls(
            registry=registry,
            total=Counter(
                "controller_runtime_reconcile_total",
                "Total number of reconciliations per controller",
                ["controller", "result"],
                registry=registry,
            ),
            errors=Counter(
                "controller_runtime_reconcile_errors_total",
                "Total number of reconciliation errors per controller",
                ["controller"],
                registry=registry,
            ),
            time=Histogram(
                "controller_runtime_reconcile_time_seconds",
                "Length of time per reconciliation per controller",
                ["controller"],
                buckets=RECONCILE_BUCKETS,
                registry=registry,
            ),
            leader=Gauge(
                "leader_election_master_status",
                "Whether this process is the leader (1) or not (0)",
                ["name"],
                registry=registry,
            ),
            autoscaler_tick=Histogram(
                "modelcluster_autoscaler_tick_seconds",
                "Time of one autoscaler tick: scraping, deciding and writing for every cluster",
                buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
                registry=registry,
            ),
            autoscaler_decisions=Counter(
                "modelcluster_autoscaler_scale_decisions_total",
                "Replica changes made by the autoscaler, by reason (QueueDepth, LowerLoad, Idle, Waking, Starting)",
                ["reason"],
                registry=registry,
            ),
            autoscaler_target=Gauge(
                "modelcluster_autoscaler_target_replicas",
                "The replica count the autoscaler last set for a cluster",
                ["namespace", "name"],
                registry=registry,
            ),
            cold_start=Histogram(
                "modelcluster_cold_start_seconds",
                "Cold start of model pods by wake path and phase. path=cold (the cluster's own pod): scheduled, "
                "started (container), loaded (model, Ready), total; path=standby (a borrowed warm standby): claimed "
                "(wake to claim), loaded (claim to Ready), total (wake to Ready)",
                ["path", "phase"],
                buckets=(0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200),
                registry=registry,
            ),
            autoscaler_scrapes=Counter(
                "modelcluster_autoscaler_scrapes_total",
                "The autoscaler's reads of /metrics, by target (gateway, runtime) and result (ok; refused: the "
                "target answered 401 or 403, a pod credential not accepted; failed: anything else)",
                ["target", "result"],
                registry=registry,
            ),
        )

    @contextmanager
    def reconcile(self, controller: str) -> Iterator[ReconcileOutcome]:
        """Time one reconciliation; an exception counts as an error, ``requeue()`` as requeue_after."""
        outcome = ReconcileOutcome()
        started = time.perf_counter()
        try:
            yield outcome
        except BaseException:
            self.total.labels(controller=controller, result=ERROR).inc()
            self.errors.labels(controller=controller).inc()
            raise
        else:
            result = REQUEUE_AFTER if outcome.requeued else SUCCESS
            self.total.labels(controller=controller, result=result).inc()
        finally:
            self.time.labels(controller=controller).observe(time.perf_counter() - started)

    def serve(self, port: int) -> None:
        """Expose ``/metrics`` on ``port`` (a daemon thread)."""
        start_http_server(port, registry=self.registry)


class ReconcileOutcome:
    """Set by a reconciliation that asked to be run again later."""

    def __init__(self) -> None:
        self.requeued = False

    def requeue(self) -> None:
        self.requeued = True
