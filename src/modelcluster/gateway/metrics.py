"""The gateway's Prometheus metrics, on its own registry (served at ``/metrics``).

The demand signal is per model and per gateway replica: whoever reads it (the
autoscaler) sums ``modelcluster_gateway_outstanding_requests`` over gateway pods
and takes the latest ``modelcluster_gateway_last_request_timestamp_seconds``.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, GCCollector, Histogram, generate_latest

from modelcluster.api.metric_names import GATEWAY_HELD, GATEWAY_LAST, GATEWAY_MODEL_LABELS, GATEWAY_OUTSTANDING

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
MODEL_LABELS = GATEWAY_MODEL_LABELS


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        # python_gc_collections_total{generation}: how often the collector runs (gateway/heap.py sets it).
        GCCollector(registry=r)
        self.outstanding = Gauge(
            GATEWAY_OUTSTANDING,
            "Requests of a model held or in flight at this gateway replica (the queue-depth signal).",
            MODEL_LABELS,
            registry=r,
        )
        self.held = Gauge(
            GATEWAY_HELD,
            "Requests of a model waiting for a ready pod or a free slot at this gateway replica.",
            MODEL_LABELS,
            registry=r,
        )
        self.last_request = Gauge(
            GATEWAY_LAST,
            "Unix time of the last arrival or completion of a request of a model at this gateway replica.",
            MODEL_LABELS,
            registry=r,
        )
        self.requests = Counter(
            "modelcluster_gateway_requests_total",
            "Answered requests by route and status class (2xx, 4xx, 5xx).",
            ("route", "code"),
            registry=r,
        )
        self.latency = Histogram(
            "modelcluster_gateway_request_duration_seconds",
            "Time to the last byte of an answer, by route.",
            ("route",),
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.model_latency = Histogram(
            "modelcluster_gateway_model_request_duration_seconds",
            "Time to the last byte of an inference answer, by model.",
            MODEL_LABELS,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.wakes = Counter(
            "modelcluster_gateway_wakes_total", "Wake requests written to stopped clusters.", MODEL_LABELS, registry=r
        )
        self.upstream_errors = Counter(
            "modelcluster_gateway_upstream_errors_total",
            "Failures talking to model pods, by kind (connect, disconnect, timeout, protocol, too_large).",
            ("kind",),
            registry=r,
        )

        self._route_children: dict[tuple[str, int], tuple[Any, Any]] = {}

    def route_children(self, route: str, status: int) -> tuple[Any, Any]:
        """The request counter and latency histogram of a route and status class (label lookups cached)."""
        key = (route, status // 100)
        children = self._route_children.get(key)
        if children is None:
            children = (self.requests.labels(route, f"{key[1]}xx"), self.latency.labels(route))
            self._route_children[key] = children
        return children

    def render(self) -> bytes:
        return generate_latest(self.registry)
