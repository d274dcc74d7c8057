"""Settings of the autoscaler loop."""

from __future__ import annotations

from dataclasses import dataclass, field

from modelcluster.operator.autoscaling.policy import Tunables


@dataclass(frozen=True)
class AutoscalerConfig:
    tick_s: float = 1.0
    gateway_urls: tuple[str, ...] = ()  # /metrics of each gateway (local runs); its /demand feed is beside it
    gateway_service: tuple[str, str] | None = None  # (namespace, name): gateways found by their EndpointSlices
    # The gateways' metrics port when the Service's EndpointSlices name no port ``metrics``.
    gateway_metrics_port: int = 8083
    runtime_port: int = 8000
    push_interval_s: float = 0.05  # the least time between two answers of one gateway's demand feed
    gateway_stale_s: float = 30.0  # last-known values of an unreachable gateway (or pod) are kept this long
    tunables: Tunables = field(default_factory=Tunables)
