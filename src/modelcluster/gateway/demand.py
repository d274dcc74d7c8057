"""Outstanding requests (held + in flight) and last activity per model, counted at arrival and completion.

Idle time starts when the last request *completes*: :meth:`Demand.finish` stamps the
time again, so a long stream counts as activity until its last byte.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from modelcluster.gateway.metrics import GatewayMetrics
from modelcluster.kube.objects import ClusterKey


@dataclass
class ModelDemand:
    outstanding: int = 0
    held: int = 0
    last_activity: float = 0.0  # unix time
    gauges: tuple[Any, Any, Any, Any] | None = None  # outstanding, held, last request, latency: looked up once


class Demand:
    def __init__(self, metrics: GatewayMetrics) -> None:
        self._metrics = metrics
        self._models: dict[ClusterKey, ModelDemand] = {}

    def of(self, key: ClusterKey) -> ModelDemand:
        return self._models.get(key) or ModelDemand()

    def _model(self, key: ClusterKey) -> ModelDemand:
        model = self._models.get(key)
        if model is None:
            m = self._metrics
            gauges = (
                m.outstanding.labels(*key),
                m.held.labels(*key),
                m.last_request.labels(*key),
                m.model_latency.labels(*key),
            )
            model = self._models[key] = ModelDemand(gauges=gauges)
        return model

    def _touch(self, model: ModelDemand) -> None:
        model.last_activity = time.time()
        assert model.gauges is not None
        outstanding, _, last, _ = model.gauges
        last.set(model.last_activity)
        outstanding.set(model.outstanding)

    def start(self, key: ClusterKey) -> None:
        model = self._model(key)
        model.outstanding += 1
        self._touch(model)

    def finish(self, key: ClusterKey) -> None:
        model = self._model(key)
        model.outstanding = max(0, model.outstanding - 1)
        self._touch(model)

    def observe_latency(self, key: ClusterKey, seconds: float) -> None:
        gauges = self._model(key).gauges
        assert gauges is not None
        gauges[3].observe(seconds)

    def hold(self, key: ClusterKey, delta: int) -> int:
        model = self._model(key)
        model.held = max(0, model.held + delta)
        assert model.gauges is not None
        model.gauges[1].set(model.held)
        return model.held
