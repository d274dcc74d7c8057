"""Start the operator: metrics, probes, leader election, then kopf."""

from __future__ import annotations

import asyncio
import logging
import os
import signal

import kopf
from kubernetes_asyncio import client

from modelcluster.catalog import Catalog
from modelcluster.operator.autoscaler import Autoscaler
from modelcluster.operator.config import OperatorConfig
from modelcluster.operator.handlers import Controller, build_registry
from modelcluster.operator.health import HealthState, start_health_server
from modelcluster.operator.kopf_settings import configure
from modelcluster.operator.kube import Kube, load_client_configuration
from modelcluster.operator.leader import LeaderElector
from modelcluster.operator.metrics import ReconcileMetrics
from modelcluster.operator.queue import WorkQueue
from modelcluster.operator.reconcile import Reconciler

logger = logging.getLogger(__name__)

#: Exit status when leadership is lost: the pod restarts and queues up as a standby.
EXIT_LEADERSHIP_LOST = 3


def _exit_on_lost_leadership() -> None:
    # Another replica may already be reconciling: stop at once rather than finish in-flight work.
    logging.shutdown()
    os._exit(EXIT_LEADERSHIP_LOST)


CONNECTION_POOL_SIZE = 32


def _report_end(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("the autoscaler stopped", exc_info=task.exception())


async def run_operator(config: OperatorConfig, catalog: Catalog) -> None:
    """Run until SIGINT/SIGTERM (or, without leadership, until it is lost)."""
    metrics = ReconcileMetrics.create()
    metrics.serve(config.metrics_port)
    health = HealthState()
    runner = await start_health_server(config.health_port, health)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    election = config.leader_election
    try:
        configuration = await load_client_configuration()
        # Reconciles share one connection pool; the Lease gets its own, so a burst of
        # work never delays a renewal past the renew deadline.
        configuration.connection_pool_maxsize = CONNECTION_POOL_SIZE
        async with client.ApiClient(configuration) as api_client, client.ApiClient(configuration) as lease_client:
            kube = Kube(api_client)
            elector = LeaderElector(Kube(lease_client), election)
            renewing: asyncio.Task[None] | None = None
            if election.enabled:
                acquiring = asyncio.ensure_future(elector.acquire())
                stopping = asyncio.ensure_future(stop.wait())
                await asyncio.wait({acquiring, stopping}, return_when=asyncio.FIRST_COMPLETED)
                stopping.cancel()
                if not acquiring.done():
                    acquiring.cancel()
                    return
                renewing = asyncio.create_task(elector.hold(_exit_on_lost_leadership))
            health.leader = True
            metrics.leader.labels(name=election.name).set(1)
            reconciler = Reconciler(
                api=kube,
                catalog=catalog,
                pods=config.pods,
                unschedulable_deadline=config.unschedulable_deadline,
            )
            controller = Controller(api=kube, reconciler=reconciler, metrics=metrics)
            controller.queue = WorkQueue(controller.converge_by_key)
            settings = kopf.OperatorSettings()
            configure(settings, config)
            scaling: asyncio.Task[None] | None = None
            if config.autoscaler is not None:
                autoscaler = Autoscaler(kube, catalog, config.autoscaler, metrics)
                scaling = asyncio.create_task(autoscaler.run(config.namespaces), name="autoscaler")
                scaling.add_done_callback(_report_end)
            try:
                await kopf.operator(
                    registry=build_registry(controller),
                    settings=settings,
                    standalone=True,
                    clusterwide=config.clusterwide,
                    namespaces=list(config.namespaces),
                    stop_flag=stop,
                )
            finally:
                if scaling is not None:
                    scaling.cancel()
                    await asyncio.gather(scaling, return_exceptions=True)
                await controller.queue.close()
                if renewing is not None:
                    renewing.cancel()
                    await elector.release()
    finally:
        await runner.cleanup()
