"""Outstanding requests (held + in flight) and last activity per model, counted at arrival and completion.

Idle time starts when the last request *completes*: :meth:`Demand.finish` stamps the
time again, so a long stream counts as activity until its last byte.

Series exist only for clusters that exist: :meth:`Demand.start` (a request that got
past the cluster lookup, or created the cluster) makes a model's series, the
gateway calls :meth:`Demand.forget` when its cluster is deleted, and the later
steps of a request (:meth:`finish`, :meth:`hold`, :meth:`observe_latency`) never
bring a forgotten model back.

Every change is published on :attr:`Demand.feed` too, the operator's autoscaler's push channel
(:mod:`modelcluster.api.demand`, served at ``/demand`` on the metrics port).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from modelcluster.api.demand import DemandFeed
from modelcluster.gateway.metrics import GatewayMetrics
from modelcluster.kube.objects import ClusterKey


@dataclass
class ModelDemand:
    outstanding: int = 0
    held: int = 0
    last_activity: float = 0.0  # unix time
    latency: Any = None  # the model's latency histogram, looked up once


class Demand:
    """Per-model counts and series; ``exists`` (the gateway's cluster table) gates the making of a series."""

    def __init__(self, metrics: GatewayMetrics, exists: Callable[[ClusterKey], bool] | None = None) -> None:
        self._metrics = metrics
        self._exists = exists
        self._models: dict[ClusterKey, ModelDemand] = {}
        self.feed = DemandFeed()

    def of(self, key: ClusterKey) -> ModelDemand:
        return self._models.get(key) or ModelDemand()

    def __contains__(self, key: ClusterKey) -> bool:
        return key in self._models

    def forget(self, key: ClusterKey) -> None:
        """Drop the model's counts and its series (its cluster was deleted)."""
        if self._models.pop(key, None) is None:
            return
        self.feed.remove(key)
        m = self._metrics
        for metric in (m.outstanding, m.held, m.last_request, m.model_latency):
            metric.remove(*key)

    def _model(self, key: ClusterKey) -> ModelDemand:
        model = self._models.get(key)
        if model is None:
            m = self._metrics
            model = self._models[key] = ModelDemand(latency=m.model_latency.labels(*key))
            # The gauges read the counts when scraped: a request changes two integers, not two series.
            m.outstanding.labels(*key).set_function(lambda: model.outstanding)
            m.held.labels(*key).set_function(lambda: model.held)
            m.last_request.labels(*key).set_function(lambda: model.last_activity)
        return model

    def _touch(self, key: ClusterKey, model: ModelDemand) -> None:
        model.last_activity = time.time()
        self._publish(key, model)

    def _publish(self, key: ClusterKey, model: ModelDemand) -> None:
        self.feed.set(key, model.outstanding, model.held, model.last_activity)

    def start(self, key: ClusterKey) -> None:
        if key not in self._models and self._exists is not None and not self._exists(key):
            return  # no ModelCluster (yet): no series for an id that may never have one
        model = self._model(key)
        model.outstanding += 1
        self._touch(key, model)

    def finish(self, key: ClusterKey) -> None:
        model = self._models.get(key)
        if model is None:
            return  # forgotten while the request ran
        model.outstanding = max(0, model.outstanding - 1)
        self._touch(key, model)

    def observe_latency(self, key: ClusterKey, seconds: float) -> None:
        model = self._models.get(key)
        if model is None:
            return
        model.latency.observe(seconds)

    def hold(self, key: ClusterKey, delta: int) -> int:
        model = self._models.get(key)
        if model is None:
            return 0  # not started, or forgotten: nothing to count
        model.held = max(0, model.held + delta)
        self._publish(key, model)
        return model.held
