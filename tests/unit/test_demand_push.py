"""Demand pushed to the autoscaler over a real HTTP feed: a rise scales at once, a lost connection mid-burst
neither stops the scaling nor tears the cluster down, and a restarted gateway is resynced in full."""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from modelcluster.catalog import Catalog
from modelcluster.operator.autoscaling.config import AutoscalerConfig
from modelcluster.operator.autoscaling.loop import Autoscaler
from modelcluster.operator.controller.store import Store

from support import FakeKube, eventually_async
from support.demand import FeedServer, Relay

NAME, NAMESPACE = "gpt2-1234abcd", "tenant"
KEY = (NAMESPACE, NAME)


def iso(stamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stamp))


def make_store(spec: dict[str, Any], replicas: int, last_request: float | None = None) -> Store:
    store = Store()
    metadata = {"name": NAME, "namespace": NAMESPACE, "uid": "u-1", "creationTimestamp": iso(time.time() - 3600)}
    status: dict[str, Any] = {"queueDepth": 0}
    if last_request is not None:
        status["lastRequestTime"] = iso(last_request)
    store.clusters.event("ADDED", {"metadata": metadata, "spec": spec, "status": status})
    labels = {"app.kubernetes.io/instance": NAME, "app.kubernetes.io/managed-by": "modelcluster-operator"}
    owners = [{"kind": "ModelCluster", "name": NAME, "uid": "u-1", "controller": True}]
    deployment = {"metadata": {"name": NAME, "namespace": NAMESPACE, "labels": labels, "ownerReferences": owners}}
    counts = {"spec": {"replicas": replicas}, "status": {"readyReplicas": replicas}}
    store.deployments.event("ADDED", {**deployment, **counts})
    store.synced.set()
    return store


def follow(store: Store) -> FakeKube:
    """A fake apiserver whose applied replica counts show in the store at once, all pods ready."""

    def applied(body: dict[str, Any]) -> None:
        if body.get("kind") != "Deployment":
            return
        current = store.deployments.named(KEY, NAME)
        assert current is not None
        updated = copy.deepcopy(current)
        updated["spec"]["replicas"] = updated["status"]["readyReplicas"] = body["spec"]["replicas"]
        store.deployments.event("MODIFIED", updated)

    return FakeKube(on_apply=applied)


def replicas(store: Store) -> int:
    deployment = store.deployments.named(KEY, NAME)
    assert deployment is not None
    return int(deployment["spec"]["replicas"])


@pytest.fixture
async def gateway() -> AsyncIterator[tuple[FeedServer, Relay]]:
    server = await FeedServer().start()
    relay = await Relay(server.port).start()
    try:
        yield server, relay
    finally:
        await relay.cut()
        await server.stop()


async def test_the_demand_connection_cut_mid_burst_neither_stops_scaling_nor_tears_down(
    default_catalog: Catalog, gateway: tuple[FeedServer, Relay]
) -> None:
    server, relay = gateway
    spec = {"model": "openai-community/gpt2", "capacity": {"min": 0, "desired": 1, "max": 4}, "timeout": 2,
            "targetPerReplica": 2}  # fmt: skip
    # Busy a moment ago (its status says so), so the first tick, which runs before the feed has answered, finds
    # it within its timeout however slowly the subscription comes up.
    store = make_store(spec, replicas=1, last_request=time.time())
    # A tick every 60 s: only the first one (which subscribes) falls in the test, so every decision below is one
    # made at once on a pushed rise.
    config = AutoscalerConfig(tick_s=60, gateway_urls=(f"http://127.0.0.1:{relay.port}/metrics",))
    autoscaler = Autoscaler(follow(store), default_catalog, config, store)
    running = asyncio.create_task(autoscaler.run())
    try:
        server.feed.set(KEY, 1, 0, time.time())
        await eventually_async(lambda: autoscaler.gateway_demand(time.time()).get(KEY), within=5, what="subscribed")
        assert replicas(store) == 1

        # A burst: 6 outstanding with 2 per replica is 3 replicas, decided on the push, long before the next tick.
        server.feed.set(KEY, 6, 0, time.time())
        await eventually_async(lambda: replicas(store) == 3, within=10, what="scaled up on the pushed rise")

        # The connection is cut mid-burst while the burst grows: the last state counts, nothing is torn down,
        # although the cluster's timeout (2 s) passes several times over.
        async with asyncio.timeout(10):
            await relay.cut()
        server.feed.set(KEY, 8, 0, time.time())
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            await autoscaler.tick(time.time())  # the ticks that decide idleness, as the loop runs them
            assert replicas(store) >= 3, "torn down while the demand connection was lost"
            await asyncio.sleep(0.2)

        # Back: the changes since the version it had arrive, and the cluster scales on.
        async with asyncio.timeout(10):
            await relay.restore()
        await eventually_async(lambda: replicas(store) == 4, within=10, what="scaled on after the connection came back")

        # The gateway restarts (a new epoch): a full resync replaces what was known of it.
        port = server.port
        async with asyncio.timeout(10):
            await server.stop()
            restarted = await FeedServer().start(port)
        try:
            restarted.feed.set(KEY, 2, 0, time.time())
            await eventually_async(
                lambda: (autoscaler.gateway_demand(time.time()).get(KEY) or None) and
                autoscaler.gateway_demand(time.time())[KEY].outstanding == 2,
                within=10, what="resynced from the restarted gateway",
            )  # fmt: skip
            assert replicas(store) == 4  # and scale-down waits for its window, as ever
        finally:
            async with asyncio.timeout(10):
                await restarted.stop()
    finally:
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            async with asyncio.timeout(10):
                await running


async def test_a_gateway_gone_for_longer_than_the_staleness_limit_stops_counting(
    default_catalog: Catalog, gateway: tuple[FeedServer, Relay]
) -> None:
    server, relay = gateway
    spec = {"model": "openai-community/gpt2", "capacity": {"min": 0, "desired": 1, "max": 4}, "targetPerReplica": 2}
    store = make_store(spec, replicas=1)
    config = AutoscalerConfig(tick_s=0.2, gateway_stale_s=1.0, gateway_urls=(f"http://127.0.0.1:{relay.port}/metrics",))
    autoscaler = Autoscaler(follow(store), default_catalog, config, store)
    running = asyncio.create_task(autoscaler.run())
    try:
        server.feed.set(KEY, 4, 0, time.time())
        await eventually_async(lambda: replicas(store) == 2, within=5, what="scaled on the pushed demand")
        await relay.cut()
        await eventually_async(lambda: KEY not in autoscaler.gateway_demand(time.time()), within=5, what="stale")
    finally:
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running


async def test_a_restarted_autoscaler_lowers_nothing_before_its_gateway_feeds_have_answered(
    default_catalog: Catalog, gateway: tuple[FeedServer, Relay]
) -> None:
    """The status's idle clock is written about once a minute, so after a restart it may say "idle" of a busy
    cluster: until its gateways' feeds have answered, nothing is lowered; then the feed's clock counts."""
    server, relay = gateway
    spec = {"model": "openai-community/gpt2", "capacity": {"min": 0, "desired": 1, "max": 2}, "timeout": 5}
    store = make_store(spec, replicas=1, last_request=time.time() - 50)  # past its timeout by the status alone
    server.feed.set(KEY, 0, 0, time.time())  # the gateway saw a request just now
    config = AutoscalerConfig(tick_s=60, gateway_urls=(f"http://127.0.0.1:{relay.port}/metrics",))
    autoscaler = Autoscaler(follow(store), default_catalog, config, store)
    async with asyncio.timeout(10):
        await relay.cut()  # the feed cannot answer yet
    try:
        for _ in range(3):
            await autoscaler.tick(time.time())
            assert replicas(store) == 1, "lowered on the status's clock before the gateway's feed answered"
            await asyncio.sleep(0.1)
        assert not autoscaler.demand_known(time.time())
        async with asyncio.timeout(10):
            await relay.restore()
        await eventually_async(lambda: autoscaler.demand_known(time.time()), within=10, what="the feed answering")
        await autoscaler.tick(time.time())
        assert replicas(store) == 1  # the feed's clock: requested a moment ago, within its timeout
    finally:
        await autoscaler.gateway_feeds.close()


async def test_a_gateway_feed_that_never_answers_holds_scale_down_only_for_its_staleness_limit(
    default_catalog: Catalog,
) -> None:
    from support import free_port

    spec = {"model": "openai-community/gpt2", "capacity": {"min": 0, "desired": 1, "max": 2}, "timeout": 5}
    store = make_store(spec, replicas=1, last_request=time.time() - 50)
    silent = f"http://127.0.0.1:{free_port()}/metrics"  # nothing listens there
    config = AutoscalerConfig(tick_s=60, gateway_urls=(silent,), gateway_stale_s=1.0)
    autoscaler = Autoscaler(follow(store), default_catalog, config, store)
    try:
        began = time.time()
        await autoscaler.tick(began)
        assert replicas(store) == 1
        await autoscaler.tick(began + 1.1)  # the staleness limit passed: the status's clock decides
        assert replicas(store) == 0
    finally:
        await autoscaler.gateway_feeds.close()
