"""The demand feed (``modelcluster.api.demand``): answers by difference, full resyncs, long polls, bad queries."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from modelcluster.api.demand import MAX_WAIT_S, REMOVALS_KEPT, DemandChanges, DemandFeed, demand_url, parse_query
from modelcluster.gateway.demand import Demand
from modelcluster.gateway.metrics import GatewayMetrics

from support.demand import FeedServer

A, B = ("tenant", "gpt2-aaaa"), ("tenant", "vit-bbbb")


def keys(changes: DemandChanges) -> set[tuple[str, str]]:
    return {(entry.namespace, entry.name) for entry in changes.clusters}


def test_a_new_subscriber_gets_everything_then_only_what_changed() -> None:
    feed = DemandFeed()
    feed.set(A, 3, 1, 100.0)
    feed.set(B, 0, 0, 50.0)
    first = feed.changes("", 0)
    assert first.full and keys(first) == {A, B} and first.version == 2
    feed.set(A, 4, 1, 101.0)
    feed.set(A, 4, 1, 101.0)  # the same values again: no change, no new version
    later = feed.changes(first.epoch, first.version)
    assert not later.full and keys(later) == {A} and later.version == 3
    assert later.clusters[0].outstanding == 4 and later.clusters[0].last_request == 101.0
    assert feed.changes(first.epoch, later.version) == DemandChanges(epoch=feed.epoch, version=3, full=False)


def test_a_removed_cluster_is_named_once_and_comes_back_as_a_change() -> None:
    feed = DemandFeed()
    feed.set(A, 1, 0, 1.0)
    feed.set(B, 1, 0, 1.0)
    seen = feed.changes("", 0)
    feed.remove(B)
    gone = feed.changes(seen.epoch, seen.version)
    assert gone.removed == [B] and gone.clusters == []
    feed.set(B, 2, 0, 2.0)
    back = feed.changes(seen.epoch, gone.version)
    assert keys(back) == {B} and back.removed == []


def test_another_epoch_a_future_version_or_a_trimmed_log_answer_in_full() -> None:
    feed = DemandFeed()
    feed.set(A, 1, 0, 1.0)
    assert feed.changes("a-restarted-publisher", 1).full  # the publisher restarted: its versions mean nothing
    assert feed.changes(feed.epoch, 99).full
    old = feed.version
    for index in range(REMOVALS_KEPT + 2):
        key = ("tenant", f"c-{index}")
        feed.set(key, 1, 0, 1.0)
        feed.remove(key)
    assert feed.changes(feed.epoch, old).full  # its removals are no longer all known
    assert not feed.changes(feed.epoch, feed.version).full


def test_another_process_has_another_epoch() -> None:
    assert DemandFeed().epoch != DemandFeed().epoch


@pytest.mark.parametrize(
    ("since", "wait"), [("x", "1"), ("-1", "1"), ("1", "nan"), ("1", str(MAX_WAIT_S + 1)), ("1", "-2")]
)
def test_bad_queries_are_refused_with_the_reason(since: str, wait: str) -> None:
    with pytest.raises(ValueError, match="since"):
        parse_query("", since, wait)


def test_the_feed_sits_beside_metrics() -> None:
    assert demand_url("http://10.0.0.7:8083/metrics") == "http://10.0.0.7:8083/demand"
    assert demand_url("http://127.0.0.1:9/metrics?gateway=1") == "http://127.0.0.1:9/demand"
    assert demand_url("http://10.1.2.3:8000") == "http://10.1.2.3:8000/demand"


def test_the_gateways_demand_is_published_as_it_counts() -> None:
    demand = Demand(GatewayMetrics())
    demand.start(A)
    demand.hold(A, +1)
    entry = demand.feed.changes("", 0).clusters[0]
    assert (entry.namespace, entry.name, entry.outstanding, entry.held) == (*A, 1, 1) and entry.last_request > 0
    version = demand.feed.version
    demand.hold(A, -1)
    demand.finish(A)
    later = demand.feed.changes(demand.feed.epoch, version)
    assert later.clusters[0].outstanding == 0 and later.clusters[0].held == 0
    demand.forget(A)
    assert demand.feed.changes(demand.feed.epoch, later.version).removed == [A]


async def test_over_http_a_long_poll_waits_for_the_change_and_bad_input_gets_the_error_shape() -> None:
    server = await FeedServer().start()
    server.feed.set(B, 0, 0, 1.0)
    url = f"http://127.0.0.1:{server.port}/demand"
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(url) as response:
                first = DemandChanges.model_validate_json(await response.read())
            assert first.full and keys(first) == {B}
            params = {"epoch": first.epoch, "since": str(first.version), "wait": "5"}
            polling = asyncio.ensure_future(http.get(url, params=params))
            await asyncio.sleep(0.2)
            assert not polling.done()  # nothing changed: the answer waits
            server.feed.set(A, 2, 2, 10.0)
            response = await asyncio.wait_for(polling, 2)
            assert response.status == 200
            changed = DemandChanges.model_validate_json(await response.read())
            assert keys(changed) == {A} and not changed.full
            body = json.loads((await response.read()) or b"{}")
            assert body["clusters"][0]["lastRequest"] == 10.0
            async with http.get(url, params={"since": "soon", "wait": "1"}) as response:
                assert response.status == 400
                refusal = await response.json()
            assert refusal["error"] and "since" in refusal["error"] and refusal.get("output") is None
            assert server.feed.version == 2  # nothing changed
    finally:
        await server.stop()
