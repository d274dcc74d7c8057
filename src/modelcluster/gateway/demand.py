"""Outstanding requests (held + in flight) and last activity per model, counted at arrival and completion.

Idle time starts when the last request *completes*: :meth:`Demand.finish` stamps the
time again, so a long stream counts as activity until its last byte.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from modelcluster.gateway.endpoints import ClusterKey
from modelcluster.gateway.metrics import GatewayMetrics


@dataclass
class ModelDemand:
    outstanding: int = 0
    held: int = 0
    last_activity: float = 0.0  # unix time


class Demand:
    def __init__(self, metrics: GatewayMetrics) -> None:
        self._metrics = metrics
        self._models: dict[ClusterKey, ModelDemand] = {}

    def of(self, key: ClusterKey) -> ModelDemand:
        return self._models.get(key) or ModelDemand()

    def _touch(self, key: ClusterKey, model: ModelDemand) -> None:
        model.last_activity = time.time()
        self._metrics.last_request.labels(*key).set(model.last_activity)
        self._metrics.outstanding.labels(*key).set(model.outstanding)

    def start(self, key: ClusterKey) -> None:
        model = self._models.setdefault(key, ModelDemand())
        model.outstanding += 1
        self._touch(key, model)

    def finish(self, key: ClusterKey) -> None:
        model = self._models.setdefault(key, ModelDemand())
        model.outstanding = max(0, model.outstanding - 1)
        self._touch(key, model)

    def hold(self, key: ClusterKey, delta: int) -> int:
        model = self._models.setdefault(key, ModelDemand())
        model.held = max(0, model.held + delta)
        self._metrics.held.labels(*key).set(model.held)
        return model.held
