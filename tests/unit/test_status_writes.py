"""No status-write storm: a busy cluster's status changes for its demand at most once a minute, the exact idle
clock is written once the cluster has been quiet, and a restarted autoscaler decides idleness from it."""

from __future__ import annotations

import copy
import time
from typing import Any

from modelcluster.api.demand import ClusterDemand
from modelcluster.catalog import Catalog
from modelcluster.kube.objects import rfc3339_from_timestamp
from modelcluster.operator.autoscaling.config import AutoscalerConfig
from modelcluster.operator.autoscaling.loop import STATUS_INTERVAL_S, Autoscaler
from modelcluster.operator.autoscaling.subscriptions import Subscription
from modelcluster.operator.controller.store import Store

from support import FakeKube

NAME, NAMESPACE = "gpt2-1234abcd", "tenant"
KEY = (NAMESPACE, NAME)
GATEWAY = "http://127.0.0.1:9/demand"
SPEC = {"model": "openai-community/gpt2", "capacity": {"min": 0, "desired": 1, "max": 4}, "timeout": 300,
        "targetPerReplica": 8}  # fmt: skip


def make_store(status: dict[str, Any], replicas: int = 1) -> Store:
    store = Store()
    created = rfc3339_from_timestamp(time.time() - 7200)
    metadata = {"name": NAME, "namespace": NAMESPACE, "uid": "u-1", "creationTimestamp": created}
    store.clusters.event("ADDED", {"metadata": metadata, "spec": SPEC, "status": status})
    labels = {"app.kubernetes.io/instance": NAME, "app.kubernetes.io/managed-by": "modelcluster-operator"}
    owners = [{"kind": "ModelCluster", "name": NAME, "uid": "u-1", "controller": True}]
    deployment = {"metadata": {"name": NAME, "namespace": NAMESPACE, "labels": labels, "ownerReferences": owners}}
    counts = {"spec": {"replicas": replicas}, "status": {"readyReplicas": replicas}}
    store.deployments.event("ADDED", copy.deepcopy({**deployment, **counts}))
    return store


def report(autoscaler: Autoscaler, outstanding: int, last_request: float, now: float) -> None:
    """What the gateway's feed last answered (the subscription's mirror), as of ``now``."""
    entry = ClusterDemand(namespace=NAMESPACE, name=NAME, outstanding=outstanding, lastRequest=last_request)
    autoscaler.gateway_feeds.items[GATEWAY] = Subscription(GATEWAY, entries={KEY: entry}, seen=now)


async def test_a_busy_cluster_is_written_at_most_once_a_minute_then_once_with_its_exact_clock(
    default_catalog: Catalog,
) -> None:
    kube = FakeKube()
    autoscaler = Autoscaler(kube, default_catalog, AutoscalerConfig(), make_store({"queueDepth": 0}))
    start = time.time()
    busy_s = 300
    for second in range(busy_s):  # five minutes of steady traffic: every second new requests, the queue moving
        now = start + second
        report(autoscaler, 2 + second % 3, now - 0.3, now)
        await autoscaler.tick(now)
    assert kube.applies == [], "a steady load needs no new replica count"
    assert len(kube.statuses) <= busy_s / STATUS_INTERVAL_S + 1, kube.statuses
    stopped = start + busy_s - 1 - 0.3  # the last request of the load
    written = len(kube.statuses)
    for second in range(busy_s, busy_s + 120):  # quiet for two minutes: the exact clock is written once
        now = start + second
        report(autoscaler, 0, stopped, now)
        await autoscaler.tick(now)
    quiet = kube.statuses[written:]
    assert quiet == [{"queueDepth": 0, "lastRequestTime": rfc3339_from_timestamp(stopped)}]


async def test_a_restarted_autoscaler_keeps_the_written_idle_clock(default_catalog: Catalog) -> None:
    last = time.time() - 200  # the clock the previous leader wrote; the gateways restarted too and know nothing
    status = {"queueDepth": 0, "lastRequestTime": rfc3339_from_timestamp(last)}
    kube = FakeKube()
    autoscaler = Autoscaler(kube, default_catalog, AutoscalerConfig(), make_store(status))
    await autoscaler.tick(last + 299)
    assert kube.writes == []  # neither torn down early nor written again
    await autoscaler.tick(last + 301)
    assert [body["spec"]["replicas"] for _, _, body in kube.applies] == [0]
