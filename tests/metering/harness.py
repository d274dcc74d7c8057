"""The gateway's application in this process over a real model pod stand-in (an aiohttp server answering
``/run`` as the runtime does, with its inference time), with metering on a real database."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer
from multidict import CIMultiDict

from modelcluster.api.metering import INFERENCE_SECONDS_HEADER
from modelcluster.api.naming import object_name
from modelcluster.catalog import Catalog
from modelcluster.gateway.app import create_app
from modelcluster.gateway.keys import build_key_secret, generate_key
from modelcluster.gateway.keystore import KeyStore
from modelcluster.gateway.metering.budgets import Budget, StaticBudgets
from modelcluster.gateway.metering.ledger import Ledger, create_engine
from modelcluster.gateway.metering.metrics import MeteringMetrics
from modelcluster.gateway.metering.records import UsageRecord
from modelcluster.gateway.metering.service import Metering
from modelcluster.gateway.settings import GatewaySettings
from modelcluster.gateway.state import Gateway

from support import FakeKube
from support.routing import slice_metadata, trusting

MODEL = "sentence-transformers/all-MiniLM-L6-v2"
CHAT_MODEL = "modelcluster/tiny-chat"
POD_SECONDS = 0.0125
STARTED = datetime(2026, 12, 2, 12, 0, 0, 123456, tzinfo=UTC)


def records(count: int, seconds: float = 0.25) -> list[UsageRecord]:
    return [
        UsageRecord(
            request_id=f"req-{index:04d}",
            tenant="acme" if index % 2 else 'o\'brien "quoted" ünïcode',
            key_id=f"key-{index}",
            model="sentence-transformers/all-MiniLM-L6-v2",
            started=STARTED + timedelta(milliseconds=index),
            task="feature-extraction",
            cluster="team-a/embed",
            meter="gpu-small",
            meter_price=0.000123,
            inference_seconds=seconds,
            tokens_in=index,
            tokens_out=2 * index,
            cost=0.000123 * seconds,
            status=200 if index % 3 else 502,
            duration_seconds=seconds + 0.001,
        )
        for index in range(count)
    ]


def cluster_body(namespace: str, model: str) -> dict[str, Any]:
    return {
        "apiVersion": "modelcluster.dev/v1alpha1",
        "kind": "ModelCluster",
        "metadata": {"name": object_name(model), "namespace": namespace, "resourceVersion": "1", "uid": "u"},
        "spec": {"model": model},
        "status": {"status": "running", "targetReplicas": 1},
    }


async def pod_run(request: web.Request) -> web.StreamResponse:
    """``/run`` as the runtime answers it: an embedding, or a chat answer or SSE stream with its usage."""
    body = await request.json()
    await asyncio.sleep(0.002)
    if "messages" not in body:
        return web.json_response(
            {"error": None, "output": [0.1, 0.2]}, headers={INFERENCE_SECONDS_HEADER: repr(POD_SECONDS)}
        )
    if not body.get("stream"):
        headers = {INFERENCE_SECONDS_HEADER: repr(POD_SECONDS), "X-Prompt-Tokens": "5", "X-Completion-Tokens": "2"}
        return web.json_response(
            {"error": None, "output": {"role": "assistant", "content": "hi there"}}, headers=headers
        )
    out = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await out.prepare(request)
    for text in ("hi", " there"):
        await out.write(f"data: {json.dumps({'error': None, 'output': text})}\n\n".encode())
    last = {
        "error": None,
        "output": "",
        "usage": {"prompt_tokens": 5, "completion_tokens": 2},
        "inference_seconds": POD_SECONDS,
    }
    await out.write(f"data: {json.dumps(last)}\n\ndata: [DONE]\n\n".encode())
    await out.write_eof()
    return out


@dataclass
class Replica:
    """One gateway replica: its app served on a loopback port, its metering and ledger."""

    server: TestServer
    metering: Metering
    keys: dict[str, str] = field(default_factory=dict)  # tenant -> key

    @property
    def url(self) -> str:
        return str(self.server.make_url("/models/v2/"))

    def headers(self, tenant: str) -> dict[str, str]:
        return {"Authorization": f"Key {self.keys[tenant]}"}

    async def close(self) -> None:
        """What SIGTERM does: stop listening, wait for the answers in flight, then the ledger writes the rest."""
        await self.server.close()


async def start_pod() -> TestServer:
    app = web.Application()
    app.router.add_post("/run", pod_run)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


async def start_replica(
    catalog: Catalog,
    pod: TestServer,
    ledger_url: str | None,
    tenants: Mapping[str, str],
    budgets: Mapping[str, Budget] | None = None,
    **ledger_options: Any,
) -> Replica:
    """A gateway for ``tenants`` (name -> key), each with a cluster of :data:`MODEL` and of :data:`CHAT_MODEL`."""
    gateway = Gateway(settings=GatewaySettings(), catalog=catalog, kube=FakeKube())
    keys = KeyStore("keys", max_staleness_s=600.0)
    secrets = []
    for index, (tenant, key) in enumerate(tenants.items()):
        secret = build_key_secret(key, tenant, 1000, "keys")
        secret["metadata"]["resourceVersion"] = str(index + 1)
        secrets.append(secret)
    keys.reset(secrets)
    keys.confirm()
    keys._ready = True
    cluster_keys = []
    for tenant in tenants:
        for model in (MODEL, CHAT_MODEL):
            gateway.clusters.put(cluster_body(tenant, model))
            cluster_keys.append((tenant, object_name(model)))
    trusting(gateway.endpoints, *cluster_keys)
    for namespace, name in cluster_keys:
        gateway.endpoints.event(
            "ADDED",
            {
                "metadata": slice_metadata(f"{name}-slice", namespace, name),
                "ports": [{"name": "http", "port": pod.port}],
                "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": True}, "targetRef": {"name": "p"}}],
            },
        )
    metrics = MeteringMetrics(gateway.metrics.registry)
    ledger = Ledger(create_engine(ledger_url), metrics, **ledger_options) if ledger_url else None
    metering = Metering(catalog, metrics, ledger, StaticBudgets(dict(budgets or {})), budget_refresh_s=0.5)
    app = create_app(gateway, keys, metering=metering)

    async def proxy_session(app: web.Application) -> Any:
        await gateway.proxy.start()
        yield
        await gateway.proxy.stop()

    app.cleanup_ctx.append(proxy_session)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return Replica(server, metering, dict(tenants))


def new_keys(*tenants: str) -> dict[str, str]:
    return {tenant: generate_key() for tenant in tenants}


async def post(
    session: aiohttp.ClientSession, url: str, headers: Mapping[str, str], body: Any
) -> tuple[int, CIMultiDict[str], bytes]:
    """The status, headers (case-insensitive) and body of a POST."""
    async with session.post(url, json=body, headers=dict(headers)) as response:
        return response.status, CIMultiDict(response.headers), await response.read()
