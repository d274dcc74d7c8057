"""A restarted autoscaler takes what the status already says as written: a converged cluster costs no write."""

from __future__ import annotations

import time
from typing import Any

from modelcluster.catalog import Catalog
from modelcluster.operator.autoscaling.config import AutoscalerConfig
from modelcluster.operator.autoscaling.loop import Autoscaler
from modelcluster.operator.controller.store import Store

from support import FakeKube

NAME, NAMESPACE = "gpt2-1234abcd", "tenant"


def _store(status: dict[str, Any]) -> Store:
    store = Store()
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 3600))
    store.clusters.event(
        "ADDED",
        {
            "metadata": {"name": NAME, "namespace": NAMESPACE, "creationTimestamp": created},
            "spec": {"model": "openai-community/gpt2", "capacity": {"desired": 0, "max": 1}},
            "status": status,
        },
    )
    labels = {"app.kubernetes.io/instance": NAME}
    store.deployments.event(
        "ADDED",
        {"metadata": {"name": NAME, "namespace": NAMESPACE, "labels": labels}, "spec": {"replicas": 0}, "status": {}},
    )
    return store


async def test_a_converged_cluster_is_not_written_after_a_restart(default_catalog: Catalog) -> None:
    kube = FakeKube()
    autoscaler = Autoscaler(kube, default_catalog, AutoscalerConfig(), _store({"status": "stopped", "queueDepth": 0}))
    for _ in range(3):
        await autoscaler.tick(time.time())
    assert kube.writes == []


async def test_a_status_without_a_queue_depth_gets_one(default_catalog: Catalog) -> None:
    kube = FakeKube()
    autoscaler = Autoscaler(kube, default_catalog, AutoscalerConfig(), _store({"status": "stopped"}))
    await autoscaler.tick(time.time())
    assert kube.writes == ["status {'queueDepth': 0}"]
