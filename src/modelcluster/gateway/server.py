"""Running the gateway: the Kubernetes client, the application, and a clean stop on SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal

from aiohttp import web

from modelcluster.api.pod_auth import CredentialIssuer
from modelcluster.catalog import Catalog
from modelcluster.gateway.app import build_api_client, create_app, create_metrics_app
from modelcluster.gateway.heap import settle
from modelcluster.gateway.keys import ApiKeyRecord
from modelcluster.gateway.keystore import KeyStore
from modelcluster.gateway.metering.budgets import StaticBudgets, TenantBudgets
from modelcluster.gateway.metering.ledger import Ledger, create_engine
from modelcluster.gateway.metering.metrics import MeteringMetrics
from modelcluster.gateway.metering.service import Metering
from modelcluster.gateway.settings import GatewaySettings
from modelcluster.gateway.state import Gateway
from modelcluster.kube.client import Kube

logger = logging.getLogger(__name__)

#: Longest request line and header field (aiohttp's defaults, stated): the head of a request stays small.
MAX_LINE_BYTES = 8190
MAX_FIELD_BYTES = 8190


def api_runner(app: web.Application, settings: GatewaySettings) -> web.AppRunner:
    """The runner of the API port, with the deadline for receiving a request's headers.

    aiohttp closes a connection still short of a full request head when its keep-alive timer fires (armed on
    connecting and after each answer), so ``client_header_timeout_s`` is that timer; the body's deadline is
    :meth:`Gateway.read_body`'s.

    On SIGTERM the runner stops listening, waits ``shutdown_timeout_s`` for the requests in flight (a request held
    for a waking cluster would otherwise keep the gateway for its whole hold timeout), then cancels the rest and
    waits for their handlers, which record them (499); the ledger's last write follows (``Ledger.stop``, at most
    20 s): within the chart's 60 s grace period at the default 15 s.
    """
    return web.AppRunner(
        app,
        handler_cancellation=True,
        shutdown_timeout=settings.shutdown_timeout_s,
        access_log=None,
        keepalive_timeout=settings.client_header_timeout_s,
        max_line_size=MAX_LINE_BYTES,
        max_field_size=MAX_FIELD_BYTES,
    )


def build_metering(settings: GatewaySettings, gateway: Gateway) -> Metering:
    """Prices, the usage ledger of ``settings.ledger_url`` (none when empty) and the settings' budgets."""
    metrics = MeteringMetrics(gateway.metrics.registry)
    ledger = None
    if settings.ledger_url:
        ledger = Ledger(
            create_engine(settings.ledger_url),
            metrics,
            batch_size=settings.ledger_batch_size,
            flush_interval_s=settings.ledger_flush_interval_s,
            buffer_limit=settings.ledger_buffer_rows,
        )
    return Metering(
        gateway.catalog,
        metrics,
        ledger,
        TenantBudgets(gateway.tenants, StaticBudgets(settings.budgets)),
        budget_refresh_s=settings.budget_refresh_s,
    )


async def serve(
    settings: GatewaySettings, catalog: Catalog, credentials: CredentialIssuer, bootstrap: ApiKeyRecord | None = None
) -> None:
    api_client = await build_api_client()
    gateway = Gateway(settings=settings, catalog=catalog, kube=Kube(api_client), credentials=credentials)
    keys = KeyStore(settings.key_namespace, max_staleness_s=settings.key_max_staleness_s)
    if bootstrap is not None:
        keys.add_static(bootstrap)
        logger.info("bootstrap API key %s accepted for tenant %s", bootstrap.key_id, bootstrap.tenant)
    app = create_app(gateway, keys, api_client, build_metering(settings, gateway))
    runner = api_runner(app, settings)
    # Long polls of the demand feed are cut at shutdown: a subscriber resumes with the next gateway.
    metrics_runner = web.AppRunner(create_metrics_app(gateway), access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    await metrics_runner.setup()
    frozen = settle(settings.gc_young_threshold)
    logger.info("start-up heap frozen: %d objects out of the garbage collector's view", frozen)
    site = web.TCPSite(runner, settings.host, settings.port, backlog=1024, reuse_address=True)
    metrics_site = web.TCPSite(metrics_runner, settings.host, settings.metrics_port, reuse_address=True)
    await site.start()
    await metrics_site.start()
    logger.info(
        "gateway listening on http://%s:%d/models/v2/, metrics on :%d/metrics",
        settings.host,
        settings.port,
        settings.metrics_port,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        logger.info("gateway stopping")
        await runner.cleanup()
        await metrics_runner.cleanup()
        await api_client.close()
