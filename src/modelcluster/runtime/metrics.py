"""Prometheus metrics of one runtime, kept in the app's own registry."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from modelcluster.api.metric_names import RUNTIME_IN_FLIGHT, RUNTIME_LAST, RUNTIME_QUEUE

COLD_START_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class RuntimeMetrics:
    """Queue depth (an autoscaler signal), in-flight work, batch sizes, stage latencies, load time, errors."""

    def __init__(self, task: str, model_id: str) -> None:
        self.registry = CollectorRegistry()
        prefix = "modelcluster_runtime"
        self.info = Gauge(
            f"{prefix}_model_info", "Model served by this runtime.", ["task", "model"], registry=self.registry
        )
        self.info.labels(task=task, model=model_id).set(1)
        self.queue_depth = Gauge(RUNTIME_QUEUE, "Requests admitted and waiting for the model.", registry=self.registry)
        self.in_flight = Gauge(RUNTIME_IN_FLIGHT, "Requests running on the model.", registry=self.registry)
        self.batch_size = Histogram(
            f"{prefix}_batch_size", "Items per model call.", buckets=BATCH_BUCKETS, registry=self.registry
        )
        self.batch_retries = Counter(
            f"{prefix}_batch_retries",
            "Failed batched model calls retried in halves to find the request that failed.",
            registry=self.registry,
        )
        self.stage_seconds = Histogram(
            f"{prefix}_stage_seconds",
            "Latency by stage: queue_wait, inference, total.",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.requests = Counter(
            f"{prefix}_requests", "Answered requests by HTTP status.", ["status"], registry=self.registry
        )
        self.errors = Counter(f"{prefix}_errors", "Errors by kind.", ["kind"], registry=self.registry)
        self.model_load_seconds = Gauge(
            f"{prefix}_model_load_seconds", "Time taken to load the model.", registry=self.registry
        )
        # The operator's histogram of the same name times the pod's phases (scheduled, started, loaded, total);
        # this one the process's own (modelcluster.runtime.startup.PHASES), one observation per phase.
        self.cold_start = Histogram(
            "modelcluster_cold_start_seconds",
            "The runtime's start-up by phase: interpreter, imports, weights, warmup, first_answer.",
            ["phase"],
            buckets=COLD_START_BUCKETS,
            registry=self.registry,
        )
        self.model_loaded = Gauge(f"{prefix}_model_loaded", "1 once the model is loaded.", registry=self.registry)
        self.draining = Gauge(
            f"{prefix}_draining", "1 from SIGTERM on: unready, finishing in-flight work.", registry=self.registry
        )
        self.last_request = Gauge(RUNTIME_LAST, "Unix time of the last /run request.", registry=self.registry)
        self.streams_cancelled = Counter(
            f"{prefix}_streams_cancelled", "Generations stopped early (client gone or timeout).", registry=self.registry
        )
        self.stream_chunks = Counter(f"{prefix}_stream_chunks", "Text deltas streamed.", registry=self.registry)

    def touch(self) -> None:
        self.last_request.set(time.time())

    def render(self) -> bytes:
        return generate_latest(self.registry)
