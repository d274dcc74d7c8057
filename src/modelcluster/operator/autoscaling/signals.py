"""Demand signals read from Prometheus text: the gateways' per-model counts and the runtime pods' queues.

The signals the autoscaler decides on, and parsers of the same demand from Prometheus text (for
benchmarks and tools that read `/metrics`; the autoscaler itself follows the pushed feed). Only the few series the
policy needs are read, with one regular expression per line, so a tick stays cheap.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from modelcluster.api.metric_names import (
    GATEWAY_HELD,
    GATEWAY_LAST,
    GATEWAY_OUTSTANDING,
    RUNTIME_IN_FLIGHT,
    RUNTIME_LAST,
    RUNTIME_QUEUE,
)
from modelcluster.kube.objects import ClusterKey

_SAMPLE = re.compile(r"^(?P<name>[a-z_]+)(?:\{(?P<labels>[^}]*)\})? (?P<value>\S+)", re.MULTILINE)
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')

_GATEWAY = frozenset({GATEWAY_OUTSTANDING, GATEWAY_HELD, GATEWAY_LAST})
_RUNTIME = frozenset({RUNTIME_QUEUE, RUNTIME_IN_FLIGHT, RUNTIME_LAST})


@dataclass
class ModelSignal:
    """One cluster's demand as one gateway (or the sum of all) reports it."""

    outstanding: int = 0
    held: int = 0
    last_request: float = 0.0

    def add(self, other: ModelSignal) -> None:
        self.outstanding += other.outstanding
        self.held += other.held
        self.last_request = max(self.last_request, other.last_request)


@dataclass(frozen=True)
class PodSignal:
    """One runtime pod's own view: waiting and running requests, last arrival."""

    busy: int = 0
    last_request: float = 0.0


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        return 0.0
    return value if value == value and value not in (float("inf"), float("-inf")) else 0.0


def parse_gateway(text: str) -> dict[ClusterKey, ModelSignal]:
    """Per-cluster demand from one gateway's ``/metrics``."""
    found: dict[ClusterKey, ModelSignal] = {}
    for match in _SAMPLE.finditer(text):
        name = match["name"]
        if name not in _GATEWAY or not match["labels"]:
            continue
        labels = dict(_LABEL.findall(match["labels"]))
        if "namespace" not in labels or "model" not in labels:
            continue
        signal = found.setdefault((labels["namespace"], labels["model"]), ModelSignal())
        value = _number(match["value"])
        if name == GATEWAY_OUTSTANDING:
            signal.outstanding = max(0, int(value))
        elif name == GATEWAY_HELD:
            signal.held = max(0, int(value))
        else:
            signal.last_request = value
    return found


def parse_runtime(text: str) -> PodSignal:
    """A runtime pod's queue + in flight and last request from its ``/metrics``."""
    busy = 0
    last = 0.0
    for match in _SAMPLE.finditer(text):
        name = match["name"]
        if name not in _RUNTIME:
            continue
        value = _number(match["value"])
        if name == RUNTIME_LAST:
            last = value
        else:
            busy += max(0, int(value))
    return PodSignal(busy=busy, last_request=last)


def sum_gateways(reports: list[dict[ClusterKey, ModelSignal]]) -> dict[ClusterKey, ModelSignal]:
    """The demand over all gateway replicas: counts added, the latest request time kept."""
    total: dict[ClusterKey, ModelSignal] = {}
    for report in reports:
        for key, signal in report.items():
            total.setdefault(key, ModelSignal()).add(signal)
    return total
