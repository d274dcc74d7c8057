"""The gateway's metrics port and series lifetime, and the key store's staleness, through the real applications."""

from __future__ import annotations

import random
import string
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from modelcluster.catalog import Catalog
from modelcluster.gateway.app import create_app, create_metrics_app
from modelcluster.gateway.keys import build_key_secret, generate_key
from modelcluster.gateway.keystore import KeyStore, watch_seconds_for
from modelcluster.gateway.settings import GatewaySettings
from modelcluster.gateway.state import Gateway
from modelcluster.kube.objects import ClusterKey

from support import FakeKube

TENANT = "acme"
MODEL_ID = "openai-community/gpt2"
PER_MODEL = (
    "modelcluster_gateway_outstanding_requests",
    "modelcluster_gateway_held_requests",
    "modelcluster_gateway_last_request_timestamp_seconds",
    "modelcluster_gateway_model_request_duration_seconds",
    "modelcluster_gateway_wakes_total",
)


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def cluster_body(name: str, model: str = MODEL_ID) -> dict[str, Any]:
    return {
        "apiVersion": "modelcluster.dev/v1alpha1",
        "kind": "ModelCluster",
        "metadata": {"name": name, "namespace": TENANT, "resourceVersion": "1"},
        "spec": {"model": model},
        "status": {"status": "stopped", "targetReplicas": 0},
    }


def per_model_lines(text: str, key: ClusterKey | None = None) -> list[str]:
    """The sample lines of the per-model series (of ``key``, else of any model)."""
    lines = [line for line in text.splitlines() if line.startswith(PER_MODEL)]
    if key is None:
        return lines
    namespace, model = key
    return [line for line in lines if f'namespace="{namespace}"' in line and f'model="{model}"' in line]


@dataclass
class Served:
    gateway: Gateway
    keys: KeyStore
    clock: Clock
    api: TestClient[Any, Any]
    metrics: TestClient[Any, Any]
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Key {self.key}"}

    async def rendered(self) -> str:
        answer = await self.metrics.get("/metrics")
        assert answer.status == 200
        return await answer.text()


@pytest.fixture
async def served(default_catalog: Catalog) -> AsyncIterator[Served]:
    clock = Clock()
    gateway = Gateway(settings=GatewaySettings(), catalog=default_catalog, kube=FakeKube())
    keys = KeyStore("keys", max_staleness_s=60.0, clock=clock)
    key = generate_key()
    secret = build_key_secret(key, TENANT, 64, "keys")
    secret["metadata"]["resourceVersion"] = "1"
    keys.reset([secret])
    keys.confirm()
    keys._ready = True  # listed and (as far as this test is concerned) followed
    api = TestClient(TestServer(create_app(gateway, keys)))
    metrics = TestClient(TestServer(create_metrics_app(gateway)))
    await api.start_server()
    await metrics.start_server()
    try:
        yield Served(gateway, keys, clock, api, metrics, key)
    finally:
        await api.close()
        await metrics.close()


# --- the metrics port ----------------------------------------------------------------------------------------------


async def test_metrics_are_served_on_the_metrics_port_only(served: Served) -> None:
    answer = await served.api.get("/metrics")
    assert answer.status == 404
    assert await answer.json() == {"error": "not found", "output": None}
    for path in ("/health", "/ready"):
        assert (await served.api.get(path)).status == 200, path
    text = await served.rendered()
    assert "# TYPE modelcluster_gateway_requests_total counter" in text
    assert (await served.metrics.get("/models/v2/list/tasks")).status == 404  # no API on the metrics port


async def test_requests_are_counted_by_the_status_class_they_were_answered_with(served: Served) -> None:
    """Errors raised below the metrics (a wrong key, an unknown model, a bad body) count as the 4xx they answer."""
    assert (await served.api.get("/models/v2/list/tasks", headers=served.headers)).status == 200
    assert (await served.api.get("/models/v2/list/tasks", headers={"Authorization": "Key nope"})).status == 401
    assert (await served.api.get(f"/models/v2/{MODEL_ID}", headers=served.headers)).status == 404
    bad = await served.api.post(f"/models/v2/{MODEL_ID}", headers=served.headers, data=b"{not json")
    assert bad.status == 422
    text = await served.rendered()
    assert 'modelcluster_gateway_requests_total{code="2xx",route="list_tasks"} 1.0' in text
    assert 'modelcluster_gateway_requests_total{code="4xx",route="list_tasks"} 1.0' in text
    assert 'modelcluster_gateway_requests_total{code="4xx",route="cluster_get"} 1.0' in text
    assert 'modelcluster_gateway_requests_total{code="4xx",route="run"} 1.0' in text
    assert 'code="5xx"' not in text


def test_the_metrics_port_has_a_setting_and_a_default() -> None:
    assert GatewaySettings().metrics_port == 8083
    assert GatewaySettings(metrics_port=9100).metrics_port == 9100


# --- series exist only for clusters that exist ---------------------------------------------------------------------


async def test_a_deleted_clusters_series_vanish(served: Served) -> None:
    gateway = served.gateway
    kept, deleted = cluster_body("kept-1111aaaa"), cluster_body("gone-2222bbbb", "openai-community/gpt2-medium")
    gateway.clusters.reset([kept, deleted])
    for key in ((TENANT, "kept-1111aaaa"), (TENANT, "gone-2222bbbb")):
        gateway.demand.start(key)
        gateway.demand.hold(key, +1)
        gateway.demand.observe_latency(key, 0.2)
        gateway.metrics.wakes.labels(*key).inc()
    gateway.router._last_wake[(TENANT, "gone-2222bbbb")] = 1.0
    before = await served.rendered()
    assert len(per_model_lines(before, (TENANT, "gone-2222bbbb"))) > len(PER_MODEL)

    gateway.clusters.event("DELETED", deleted)
    after = await served.rendered()
    assert per_model_lines(after, (TENANT, "gone-2222bbbb")) == []
    assert per_model_lines(after, (TENANT, "kept-1111aaaa")) == per_model_lines(before, (TENANT, "kept-1111aaaa"))
    assert (TENANT, "gone-2222bbbb") not in gateway.router._last_wake

    # The request that was in flight when its cluster went ends without bringing the series back.
    gateway.demand.hold((TENANT, "gone-2222bbbb"), -1)
    gateway.demand.finish((TENANT, "gone-2222bbbb"))
    gateway.demand.observe_latency((TENANT, "gone-2222bbbb"), 0.3)
    assert per_model_lines(await served.rendered(), (TENANT, "gone-2222bbbb")) == []


async def test_a_cluster_missing_from_a_new_list_loses_its_series(served: Served) -> None:
    gateway = served.gateway
    gateway.clusters.reset([cluster_body("gone-2222bbbb")])
    gateway.demand.start((TENANT, "gone-2222bbbb"))
    assert per_model_lines(await served.rendered())
    gateway.clusters.reset([])  # the watch lost track and listed again: the cluster is gone
    assert per_model_lines(await served.rendered()) == []


async def test_requests_for_unknown_models_leave_no_series(served: Served) -> None:
    rng = random.Random(7)
    for _ in range(200):
        org = "".join(rng.choices(string.ascii_lowercase, k=8))
        name = "".join(rng.choices(string.ascii_lowercase + string.digits, k=12))
        answer = await served.api.post(f"/models/v2/{org}/{name}", json={"text": "hi"}, headers=served.headers)
        assert answer.status == 404, await answer.text()
        chat = {"model": f"{org}/{name}", "messages": [{"role": "user", "content": "hi"}]}
        answer = await served.api.post("/models/v2/openai/v1/chat/completions", json=chat, headers=served.headers)
        assert answer.status == 404, await answer.text()
    text = await served.rendered()
    assert per_model_lines(text) == []
    assert served.gateway.clusters.items == {}


def test_demand_makes_no_series_for_a_key_without_a_cluster(served: Served) -> None:
    gateway = served.gateway
    gateway.demand.start((TENANT, "no-such-cluster"))
    assert gateway.demand.hold((TENANT, "no-such-cluster"), +1) == 0
    gateway.demand.finish((TENANT, "no-such-cluster"))
    assert (TENANT, "no-such-cluster") not in gateway.demand
    assert per_model_lines(gateway.metrics.render().decode()) == []


# --- stale API keys ------------------------------------------------------------------------------------------------


async def test_stale_keys_answer_503_until_the_table_is_confirmed_again(served: Served) -> None:
    assert (await served.api.get("/models/v2/list/tasks", headers=served.headers)).status == 200
    served.clock.now += 60.0  # at the limit: still fresh
    assert (await served.api.get("/models/v2/list/tasks", headers=served.headers)).status == 200
    assert (await served.api.get("/ready")).status == 200

    served.clock.now += 1.5
    answer = await served.api.get("/models/v2/list/tasks", headers=served.headers)
    assert answer.status == 503
    assert answer.headers["Retry-After"] == "5"
    body = await answer.json()
    assert body == {
        "error": "API keys are stale: the key store has not been refreshed for 61 s",
        "output": None,
    }
    # Without a key too (a stale table cannot say that a key is unknown), and in OpenAI's shape on its routes.
    assert (await served.api.get("/models/v2/list/tasks")).status == 503
    openai = await served.api.get("/models/v2/openai/v1/models", headers=served.headers)
    assert openai.status == 503
    assert "API keys are stale" in (await openai.json())["error"]["message"]
    ready = await served.api.get("/ready")
    assert ready.status == 503
    assert "API keys are stale" in (await ready.json())["error"]
    assert (await served.api.get("/health")).status == 200
    assert (await served.metrics.get("/metrics")).status == 200

    served.keys.confirm()  # a bookmark, an event, an accepted watch or a list
    assert (await served.api.get("/models/v2/list/tasks", headers=served.headers)).status == 200
    assert (await served.api.get("/ready")).status == 200


def test_staleness_counts_from_the_last_confirmation() -> None:
    clock = Clock()
    keys = KeyStore("keys", max_staleness_s=10.0, clock=clock)
    assert keys.age() is None and not keys.stale  # nothing listed yet: not ready, which /ready says
    keys.confirm()
    clock.now += 10.0
    assert keys.age() == 10.0 and not keys.stale
    clock.now += 0.1
    assert keys.stale
    keys.confirm()
    assert not keys.stale


def test_an_idle_watch_is_renewed_well_within_the_staleness_limit() -> None:
    assert watch_seconds_for(60.0) == 30
    assert watch_seconds_for(1.0) == 1
    assert watch_seconds_for(10_000.0) == 300
    assert KeyStore("keys", max_staleness_s=60.0).watch_timeout == 30
    assert KeyStore("keys", max_staleness_s=60.0, watch_timeout=7).watch_timeout == 7
    assert GatewaySettings().key_max_staleness_s == 60.0
