"""The gateway's aiohttp applications: the API (middlewares for errors, metrics, keys and limits; routes;
lifecycle) and, on a port of its own, Prometheus ``/metrics`` (:func:`create_metrics_app`).

``/metrics`` names every tenant's namespaces and models, so it is not served on the API port (404 there):
the metrics port is for the operator's autoscaler and Prometheus, not for tenants.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web
from kubernetes_asyncio import client

from modelcluster.api import ApiError, error_body
from modelcluster.api.demand import DEMAND_PATH, answer
from modelcluster.api.errors import InternalError, RateLimited, StatusError, Unauthorized, Unavailable
from modelcluster.api.labels import MANAGED_SELECTOR_TEXT
from modelcluster.gateway import native
from modelcluster.gateway.endpoints import SERVICE_NAME_LABEL
from modelcluster.gateway.keystore import KeyStore
from modelcluster.gateway.limits import ConcurrencyLimiter
from modelcluster.gateway.metering.http import METERING, metering_middleware
from modelcluster.gateway.metering.metrics import MeteringMetrics
from modelcluster.gateway.metering.routes import usage as usage_route
from modelcluster.gateway.metering.service import Metering
from modelcluster.gateway.native import GATEWAY
from modelcluster.gateway.openai.protocol import openai_error_body
from modelcluster.gateway.openai.routes import add_routes as add_openai_routes
from modelcluster.gateway.openapi import openapi_document
from modelcluster.gateway.peers import Peers
from modelcluster.gateway.request_keys import KEY_ID, TENANT
from modelcluster.gateway.state import Gateway
from modelcluster.gateway.tenancy import TENANT_LABEL
from modelcluster.gateway.tenant_namespaces import TenantNamespaces
from modelcluster.kube.client import load_client_configuration
from modelcluster.kube.informer import run_informer

logger = logging.getLogger(__name__)

API_PREFIX = "/models/v2/"
#: The OpenAI route family; ``/models/v2/openai/{model}`` is the native route of OpenAI's own models.
OPENAI_PREFIX = "/models/v2/openai/v1/"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
KEYS: web.AppKey[KeyStore] = web.AppKey("keys", KeyStore)
LIMITER: web.AppKey[ConcurrencyLimiter] = web.AppKey("limiter", ConcurrencyLimiter)
#: The tenant namespaces (followed when the app runs against a cluster): keys of any other namespace get 401.
TENANTS: web.AppKey[TenantNamespaces | None] = web.AppKey("tenants")


def _render(request: web.Request, error: ApiError) -> web.Response:
    """An error in the shape of the request's route family: OpenAI's on the OpenAI routes, else the native one."""
    if request.path.startswith(OPENAI_PREFIX):
        response = web.json_response(openai_error_body(error), status=error.openai_status)
    else:
        response = web.json_response(error_body(error.message), status=error.status)
    if error.retry_after and error.status in (429, 503):
        response.headers["Retry-After"] = str(error.retry_after)
    return response


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure answers in the API's error shape (OpenAI's on the OpenAI routes); internals stay in the log."""
    try:
        return await handler(request)
    except ApiError as error:
        return _render(request, error)
    except web.HTTPException as error:
        if error.status < 400:
            raise
        message = "not found" if error.status == 404 else error.reason
        response = _render(request, StatusError(error.status, message))
        if "Allow" in error.headers:
            response.headers["Allow"] = error.headers["Allow"]
        return response
    except (ConnectionResetError, asyncio.CancelledError):
        raise
    except Exception:
        request_id = uuid.uuid4().hex[:12]
        logger.exception("internal error (request %s) on %s %s", request_id, request.method, request.path)
        return _render(request, InternalError(f"internal error (request {request_id})"))


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.monotonic()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    finally:
        route = request.match_info.route.name or "unmatched"
        counter, histogram = request.app[GATEWAY].metrics.route_children(route, status)
        counter.inc()
        histogram.observe(time.monotonic() - started)


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """``Authorization: Key <key>`` (or the bare key) -> the tenant; the key's concurrency limit."""
    if not request.path.startswith(API_PREFIX):
        return await handler(request)
    keys = request.app[KEYS]
    if keys.stale:
        # The watch of the key Secrets has not been confirmed for too long: a revoked key might still be listed.
        raise Unavailable(keys.stale_message(), retry_after=5)
    record = keys.authenticate(request.headers.get("Authorization"))
    if record is None:
        raise Unauthorized()
    tenants = request.app[TENANTS]
    if tenants is not None and record.tenant not in tenants:
        # The key's namespace is gone or no longer labelled a tenant: the key is no good until it is again.
        if tenants.first_refusal(record.key_id):
            logger.warning(
                "API key %s: namespace %s is not a tenant namespace; answering 401", record.key_id, record.tenant
            )
        raise Unauthorized()
    limiter = request.app[LIMITER]
    if not limiter.try_acquire(record.key_id, record.concurrency):
        raise RateLimited()
    request[TENANT] = record.tenant
    request[KEY_ID] = record.key_id
    try:
        return await handler(request)
    finally:
        limiter.release(record.key_id)


async def health(request: web.Request) -> web.Response:
    return web.json_response({"error": None, "output": "ok"})


async def ready(request: web.Request) -> web.Response:
    keys = request.app[KEYS]
    if not keys.ready:
        return web.json_response(error_body("not ready: API keys not loaded"), status=503)
    if keys.stale:
        return web.json_response(error_body(f"not ready: {keys.stale_message()}"), status=503)
    return web.json_response({"error": None, "output": "ready"})


async def metrics(request: web.Request) -> web.Response:
    body = request.app[GATEWAY].metrics.render()
    return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})


async def demand_feed(request: web.Request) -> web.Response:
    """``GET /demand``: the per-cluster demand that changed since the caller's version (a long poll)."""
    status, body = await answer(request.app[GATEWAY].demand.feed, request.query)
    return web.Response(body=body, status=status, content_type="application/json")


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi_document())


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/health", health, name="health")
    r.add_get("/ready", ready, name="ready")
    r.add_get("/openapi.json", openapi, name="openapi")
    r.add_get("/models/v2/list/models", native.list_models, name="list_models")
    r.add_get("/models/v2/list/tasks", native.list_tasks, name="list_tasks")
    r.add_get("/models/v2/list/clusters", native.list_clusters, name="list_clusters")
    r.add_get("/models/v2/usage", usage_route, name="usage")
    add_openai_routes(r)
    model = "/models/v2/{org}/{name}"
    r.add_post(model, native.run, name="run")
    r.add_put(model, native.create_cluster, name="cluster_create")
    r.add_get(model, native.get_cluster, name="cluster_get", allow_head=False)
    r.add_patch(model, native.patch_cluster, name="cluster_patch")
    r.add_delete(model, native.delete_cluster, name="cluster_delete")


def create_app(
    gateway: Gateway, keys: KeyStore, api_client: client.ApiClient | None = None, metering: Metering | None = None
) -> web.Application:
    """The application; with ``api_client`` its startup starts the watches (keys, clusters, Services, endpoints).

    ``metering`` (prices, the usage ledger, budgets) defaults to prices and metrics with no ledger.
    """
    app = web.Application(
        # The metrics outside the errors: a request is counted with the status it was answered with (the errors
        # render what the routes and the keys raise).
        middlewares=[metering_middleware, metrics_middleware, errors_middleware, auth_middleware],
        client_max_size=gateway.settings.max_body_bytes,
    )
    app[GATEWAY] = gateway
    app[METERING] = metering or Metering(gateway.catalog, MeteringMetrics(gateway.metrics.registry))
    app.on_startup.append(_start_metering)
    app.on_cleanup.append(_stop_metering)
    app[KEYS] = keys
    app[LIMITER] = ConcurrencyLimiter(gateway.settings.replicas)
    app[TENANTS] = None
    add_routes(app)
    app.on_cleanup.append(_close_providers)
    if api_client is not None:
        tenants = app[TENANTS] = TenantNamespaces()
        app.cleanup_ctx.append(_lifecycle(gateway, keys, api_client, tenants, app[LIMITER]))
    return app


async def _start_metering(app: web.Application) -> None:
    app[METERING].start()


async def _stop_metering(app: web.Application) -> None:
    """After the last answer (aiohttp's cleanup follows the wait for the handlers): the ledger writes what is left."""
    await app[METERING].stop()


async def _close_providers(app: web.Application) -> None:
    await app[GATEWAY].providers.close()


def create_metrics_app(gateway: Gateway) -> web.Application:
    """The application of the metrics port: ``GET /metrics`` and the autoscaler's ``GET /demand``."""
    app = web.Application()
    app[GATEWAY] = gateway
    app.router.add_get("/metrics", metrics, name="metrics")
    app.router.add_get(DEMAND_PATH, demand_feed, name="demand")
    return app


def _lifecycle(
    gateway: Gateway,
    keys: KeyStore,
    api_client: client.ApiClient,
    tenants: TenantNamespaces,
    limiter: ConcurrencyLimiter,
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        await gateway.proxy.start()
        await keys.start(api_client)
        clusters_synced, endpoints_synced, services_synced = asyncio.Event(), asyncio.Event(), asyncio.Event()
        tenants_synced = asyncio.Event()
        kube = gateway.kube
        tasks = [
            # The operator's Services: a slice routes only when its Service is the cluster's own child.
            asyncio.create_task(
                run_informer(
                    kube,
                    kube.list_all_services,
                    gateway.endpoints.services,
                    services_synced,
                    "Services",
                    label_selector=MANAGED_SELECTOR_TEXT,
                )
            ),
            asyncio.create_task(
                run_informer(kube, kube.list_all_clusters, gateway.clusters, clusters_synced, "ModelClusters")
            ),
            # Tenants (quotas, budgets): gateway/tenants.py.
            asyncio.create_task(run_informer(kube, kube.list_tenants, gateway.tenants, tenants_synced, "Tenants")),
            asyncio.create_task(
                run_informer(
                    kube,
                    kube.list_all_endpoint_slices,
                    gateway.endpoints,
                    endpoints_synced,
                    "EndpointSlices",
                    label_selector=MANAGED_SELECTOR_TEXT,
                )
            ),
        ]
        namespaces_synced = asyncio.Event()
        tasks.append(
            asyncio.create_task(
                run_informer(
                    kube,
                    kube.list_namespaces,
                    tenants,
                    namespaces_synced,
                    "tenant namespaces",
                    label_selector=TENANT_LABEL,
                )
            )
        )
        if gateway.settings.peers_service is not None:
            namespace, name = gateway.settings.peers_service
            peers = Peers(on_count=lambda count: setattr(limiter, "replicas", count))
            slices = functools.partial(kube.discovery.list_namespaced_endpoint_slice, namespace)
            tasks.append(
                asyncio.create_task(
                    run_informer(
                        kube, slices, peers, asyncio.Event(), f"the gateway's peers ({namespace}/{name})",
                        label_selector=f"{SERVICE_NAME_LABEL}={name}",
                    )
                )
            )  # fmt: skip
        synced = (
            clusters_synced.wait(),
            endpoints_synced.wait(),
            services_synced.wait(),
            tenants_synced.wait(),
            namespaces_synced.wait(),
        )
        await asyncio.wait_for(asyncio.gather(*synced), timeout=60)
        logger.info("gateway ready: %d API keys, watching ModelClusters, Services and EndpointSlices", len(keys))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await keys.stop()
            await gateway.router.stop()
            await gateway.proxy.stop()

    return lifecycle


async def build_api_client() -> client.ApiClient:
    return client.ApiClient(configuration=await load_client_configuration())
