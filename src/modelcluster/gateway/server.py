"""Running the gateway: the Kubernetes client, the application, and a clean stop on SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal

from aiohttp import web

from modelcluster.catalog import Catalog
from modelcluster.gateway.app import build_api_client, create_app, create_metrics_app
from modelcluster.gateway.keystore import KeyStore
from modelcluster.gateway.settings import GatewaySettings
from modelcluster.gateway.state import Gateway
from modelcluster.kube.client import Kube

logger = logging.getLogger(__name__)


async def serve(settings: GatewaySettings, catalog: Catalog) -> None:
    api_client = await build_api_client()
    gateway = Gateway(settings=settings, catalog=catalog, kube=Kube(api_client))
    keys = KeyStore(settings.key_namespace, max_staleness_s=settings.key_max_staleness_s)
    app = create_app(gateway, keys, api_client)
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
    metrics_runner = web.AppRunner(create_metrics_app(gateway), access_log=None)
    await runner.setup()
    await metrics_runner.setup()
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
