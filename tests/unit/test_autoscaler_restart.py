"""A restarted autoscaler takes what the status already says as written: a converged cluster costs no write."""

from __future__ import annotations

import time
from typing import Any

import pytest

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
            "metadata": {"name": NAME, "namespace": NAMESPACE, "uid": "u-1", "creationTimestamp": created},
            "spec": {"model": "openai-community/gpt2", "capacity": {"desired": 0, "max": 1}},
            "status": status,
        },
    )
    labels = {"app.kubernetes.io/instance": NAME, "app.kubernetes.io/managed-by": "modelcluster-operator"}
    owners = [{"kind": "ModelCluster", "name": NAME, "uid": "u-1", "controller": True}]
    metadata = {"name": NAME, "namespace": NAMESPACE, "labels": labels, "ownerReferences": owners}
    store.deployments.event("ADDED", {"metadata": metadata, "spec": {"replicas": 0}, "status": {}})
    return store


async def test_a_converged_cluster_is_not_written_after_a_restart(default_catalog: Catalog) -> None:
    kube = FakeKube()
    autoscaler = Autoscaler(kube, default_catalog, AutoscalerConfig(), _store({"status": "stopped", "queueDepth": 0}))
    for _ in range(3):
        await autoscaler.tick(time.time())
    assert kube.writes == []


LAST_REQUEST = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 3000))


@pytest.mark.parametrize(
    ("status", "writes"),
    [
        pytest.param(
            {"status": "stopped", "lastRequestTime": LAST_REQUEST},
            [f"status {{'queueDepth': 0, 'lastRequestTime': '{LAST_REQUEST}'}}"],
            id="requested-before",
        ),
        pytest.param({"status": "stopped"}, [], id="never-requested"),
    ],
)
async def test_a_status_without_a_queue_depth_gets_one_once_the_cluster_had_a_request(
    default_catalog: Catalog, status: dict[str, Any], writes: list[str]
) -> None:
    kube = FakeKube()
    autoscaler = Autoscaler(kube, default_catalog, AutoscalerConfig(), _store(status))
    for _ in range(3):
        await autoscaler.tick(time.time())
    assert kube.writes == writes


@pytest.mark.parametrize("impostor", ["unowned", "another-name"])
async def test_a_deployment_the_cluster_does_not_own_is_never_scaled(default_catalog: Catalog, impostor: str) -> None:
    """Labelled like the cluster's children but not its own: the autoscaler leaves it (and its namesake) alone."""
    kube = FakeKube()
    store = _store({"status": "stopped"})
    deployment = store.deployments.named((NAMESPACE, NAME), NAME)
    assert deployment is not None
    store.deployments.event("DELETED", deployment)
    if impostor == "unowned":
        deployment["metadata"].pop("ownerReferences")
    else:
        deployment["metadata"]["name"] = "decoy"
    store.deployments.event("ADDED", deployment)
    autoscaler = Autoscaler(kube, default_catalog, AutoscalerConfig(), store)
    await autoscaler.tick(time.time())
    assert kube.writes == []
