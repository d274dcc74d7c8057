"""Per-provider Prometheus series, on the gateway's registry; labels are the five providers and fixed sets."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from modelcluster.gateway.metrics import LATENCY_BUCKETS

#: Kinds of upstream failure counted by ``modelcluster_gateway_provider_upstream_errors_total``.
ERROR_KINDS = ("connect", "timeout", "protocol", "status", "stream")


class ProviderMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "modelcluster_gateway_provider_requests_total",
            "Closed-model requests by provider and status class (2xx, 4xx, 5xx) of the answer.",
            ("provider", "code"),
            registry=registry,
        )
        self.latency = Histogram(
            "modelcluster_gateway_provider_request_duration_seconds",
            "Time to the last byte of a closed-model answer, by provider.",
            ("provider",),
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.first_byte = Histogram(
            "modelcluster_gateway_provider_first_byte_seconds",
            "Time from sending a request to the provider to the first byte of its answer's body, by provider.",
            ("provider",),
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.upstream_errors = Counter(
            "modelcluster_gateway_provider_upstream_errors_total",
            "Failures of a provider: connect, timeout, protocol, status (an error answer), stream (error after 200).",
            ("provider", "kind"),
            registry=registry,
        )
        self.tokens = Counter(
            "modelcluster_gateway_provider_tokens_total",
            "Tokens the providers reported, by provider and direction (prompt, completion).",
            ("provider", "direction"),
            registry=registry,
        )

    def answered(self, provider: str, status: int, seconds: float) -> None:
        self.requests.labels(provider, f"{status // 100}xx").inc()
        self.latency.labels(provider).observe(seconds)

    def failed(self, provider: str, kind: str) -> None:
        assert kind in ERROR_KINDS
        self.upstream_errors.labels(provider, kind).inc()
