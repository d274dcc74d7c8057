"""Routes of the native API: inference and cluster CRUD on ``/models/v2/{org}/{name}``, and the lists."""

from __future__ import annotations

import time
from functools import partial
from typing import Any

from aiohttp import web

from modelcluster.api import InputError, normalize, parse_run_request, task_info, task_names
from modelcluster.api.errors import NotFound
from modelcluster.catalog.pricing import Meter, meter_of
from modelcluster.catalog.schema import BYTES_PER_PARAM, HEADROOM
from modelcluster.gateway.clusters import build_patch, cluster_view, parse_cluster_body
from modelcluster.gateway.kube_answers import answered
from modelcluster.gateway.metering.http import (
    METERING,
    draft_of,
    meter_headers,
    meter_provider,
    observe_upstream,
    set_meter,
)
from modelcluster.gateway.providers.serving import serve_native
from modelcluster.gateway.quotas import merged_spec
from modelcluster.gateway.request_keys import TENANT
from modelcluster.gateway.state import Gateway, Target
from modelcluster.kube.objects import own_key, rfc3339_from_timestamp

GATEWAY: web.AppKey[Gateway] = web.AppKey("gateway", Gateway)
JSON_HEADERS = {"Content-Type": "application/json"}


def ok(output: Any, status: int = 200, **extra: Any) -> web.Response:
    return web.json_response({"error": None, "output": output, **extra}, status=status)


def _model_id(request: web.Request) -> str:
    return f"{request.match_info['org']}/{request.match_info['name']}"


def _last_request(gateway: Gateway, target: Target) -> str | None:
    stamp = gateway.demand.of(target.key).last_activity
    return rfc3339_from_timestamp(stamp) if stamp else None


async def run(request: web.Request) -> web.StreamResponse:
    """``POST /models/v2/{modelId}``: checked against the model's task, then sent to a ready pod (waking it).

    What the request keeps from here on (while it is held, say) is its raw body, which is what is forwarded: the
    parsed body lives only in :func:`_check_body`.
    """
    gateway = request.app[GATEWAY]
    target = gateway.target(request, _model_id(request))
    metering, draft = request.app[METERING], draft_of(request)
    provider = gateway.providers.client_for(target.model_id, open_model=is_open(target))
    if provider is not None:
        # A closed model: its provider answers with the caller's key; no cluster is created, woken or counted.
        # Metered at price 0 with the provider's token counts (the provider bills the caller's key).
        meter_provider(request, target.model_id, "chat", provider.name)
        metering.check_budget(str(request[TENANT]))
        body = await gateway.parse(await gateway.read_body(request), parse_run_request)
        return await serve_native(request, gateway.providers, provider, target.model_id, body)
    task = target.task or gateway.task_of(target)
    set_meter(draft, target.model_id, task, "/".join(target.key), metering.meter(target.model_id, task))
    metering.check_budget(str(request[TENANT]))
    raw = await gateway.read_body(request)
    await _check_body(gateway, target, raw)
    await gateway.ensure(target)
    headers = dict(JSON_HEADERS)
    accept = request.headers.get("Accept")
    if accept:
        headers["Accept"] = accept
    gateway.demand.start(target.key)
    started = time.monotonic()
    try:
        upstream = await gateway.proxy.send(target.key, raw, headers)
        try:
            return await gateway.proxy.relay(request, upstream, meter_headers(draft))
        finally:
            observe_upstream(draft, upstream.response.status, upstream.response.headers, time.monotonic() - started)
    finally:
        gateway.demand.finish(target.key)
        gateway.demand.observe_latency(target.key, time.monotonic() - started)


def is_open(target: Target) -> bool:
    """Whether ``target`` is an open model: the caller has its cluster, or the catalog knows its task."""
    return target.cluster is not None or target.task is not None


async def _check_body(gateway: Gateway, target: Target, raw: bytes) -> None:
    """Parse ``raw`` once (within the structure limits) and check it against the model's task; 4xx otherwise."""
    body = await gateway.parse(raw, parse_run_request)
    task = target.task or gateway.task_of(target)
    info = task_info(task)
    normalize(body, task, info.inputs)
    if body.stream and not (info.streamable or info.media_generator):
        # Media generators take `stream` with `json: false` (raw bytes), as the SDK sends it.
        raise InputError(f"{task} does not stream; send `stream: false`")


async def create_cluster(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    target = gateway.target(request, _model_id(request))
    body = await gateway.parse(await gateway.read_body(request), partial(parse_cluster_body, allow_empty=True))
    task = gateway.task_of(target, body.task)
    created = await gateway.create(target, body)
    view = cluster_view(created, task=task)
    return ok(view, status=201, cluster=view)


async def get_cluster(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    target = gateway.target(request, _model_id(request))
    if target.cluster is None:
        raise NotFound(f"no cluster for {target.model_id}")
    view = cluster_view(target.cluster, _last_request(gateway, target), target.task)
    return ok(view, cluster=view)


async def patch_cluster(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    target = gateway.target(request, _model_id(request))
    body = await gateway.parse(await gateway.read_body(request), partial(parse_cluster_body, allow_empty=False))
    if target.cluster is None:
        raise NotFound(f"no cluster for {target.model_id}")
    patch = build_patch(body, target.task)
    namespace, name = target.key
    async with gateway.cluster_writes(namespace):
        current = gateway.clusters.get(target.key) or target.cluster
        gateway.check_quota(target.key, merged_spec(current.get("spec") or {}, patch))
        updated = await answered(
            gateway.kube.patch_cluster(namespace, name, patch), f"cluster for {target.model_id}", caller_body=True
        )
        gateway.clusters.put(updated)
    view = cluster_view(updated, _last_request(gateway, target), target.task)
    return ok(view, cluster=view)


async def delete_cluster(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    target = gateway.target(request, _model_id(request))
    if target.cluster is None:
        raise NotFound(f"no cluster for {target.model_id}")
    namespace, name = target.key
    await answered(gateway.kube.delete_cluster(namespace, name), f"cluster for {target.model_id}")
    gateway.clusters.event("DELETED", target.cluster)
    return ok(f"cluster for {target.model_id} deleted")


def _model_item(model_id: str, task: str, params: int | None, meter: Meter) -> dict[str, Any]:
    ram_gb = round(params * BYTES_PER_PARAM * HEADROOM / 1e9, 2) if params else None
    return {
        "modelId": model_id,
        "task": task,
        "ramRequired": ram_gb,
        "meter": meter.name,
        "meterPrice": meter.price,
        "params": params,
    }


async def list_models(request: web.Request) -> web.Response:
    """The catalog's models plus the caller's clusters of other models; filters ``task`` and ``modelId``."""
    gateway = request.app[GATEWAY]
    catalog = gateway.catalog
    task, wanted = request.query.get("task"), request.query.get("modelId")
    items: dict[str, dict[str, Any]] = {}
    for model in catalog.models:
        items[model.id] = _model_item(model.id, model.task, model.params, meter_of(catalog, model.id, model.task))
    for cluster in gateway.clusters.in_namespace(str(request[TENANT])):
        spec = cluster.get("spec") or {}
        model_id, model_task = spec.get("model"), (cluster.get("status") or {}).get("task") or spec.get("task")
        if model_id and model_task and model_id not in items:
            items[model_id] = _model_item(model_id, model_task, None, meter_of(catalog, model_id, model_task))
    output = [
        item
        for item in items.values()
        if (task is None or item["task"] == task)
        and (wanted is None or item["modelId"].casefold() == wanted.casefold())
    ]
    return ok(output)


async def list_tasks(request: web.Request) -> web.Response:
    return ok(task_names())


async def list_clusters(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    namespace = str(request[TENANT])
    views = []
    for cluster in gateway.clusters.in_namespace(namespace):
        stamp = gateway.demand.of(own_key(cluster)).last_activity
        last = rfc3339_from_timestamp(stamp) if stamp else None
        views.append(cluster_view(cluster, last))
    return ok(views)
