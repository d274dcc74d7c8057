"""Start the operator: metrics, probes, leader election, then kopf."""

from __future__ import annotations

import asyncio
import logging
import os
import signal

import kopf
from kubernetes_asyncio import client

from modelcluster.catalog import Catalog
from modelcluster.kube.client import Kube, load_client_configuration
from modelcluster.operator.autoscaling.loop import Autoscaler
from modelcluster.operator.builders.warm_pool import resolve_pools
from modelcluster.operator.config import OperatorConfig
from modelcluster.operator.controller.handlers import build_registry
from modelcluster.operator.controller.kopf_settings import configure
from modelcluster.operator.controller.leader import FencedApiClient, LeaderElector, LeaseStore
from modelcluster.operator.controller.reconcile import Reconciler
from modelcluster.operator.controller.store import Store
from modelcluster.operator.controller.tenant_policies import TenantPolicies
from modelcluster.operator.controller.tenants import TenantController
from modelcluster.operator.controller.warm_pool import WarmPool
from modelcluster.operator.controller.workers import Controller
from modelcluster.operator.health import HealthState, start_health_server
from modelcluster.operator.metrics import ReconcileMetrics

logger = logging.getLogger(__name__)

#: Exit status when leadership is lost: the pod restarts and queues up as a standby.
EXIT_LEADERSHIP_LOST = 3


def _exit_on_lost_leadership() -> None:
    # Another replica may already be reconciling: stop at once rather than finish in-flight work.
    logging.shutdown()
    os._exit(EXIT_LEADERSHIP_LOST)


CONNECTION_POOL_SIZE = 64


def _report_end(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("the %s stopped", task.get_name(), exc_info=task.exception())


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
        async with client.ApiClient(configuration) as lease_client:
            elector = LeaderElector(
                LeaseStore(Kube(lease_client), election.namespace, election.name),
                election,
                on_lost=_exit_on_lost_leadership,
            )
            if election.enabled:
                # Every write of the operator's own client passes the lease's fence first.
                api_client: client.ApiClient = FencedApiClient(configuration, elector.check)
                # A plain handler, not the loop's: it runs before any callback of the resumed loop can write.
                signal.signal(signal.SIGCONT, lambda signum, frame: elector.on_resume())
            else:
                api_client = client.ApiClient(configuration)
            async with api_client:
                await _lead(config, catalog, Kube(api_client), elector, metrics, health, stop)
    finally:
        await runner.cleanup()


async def _lead(
    config: OperatorConfig,
    catalog: Catalog,
    kube: Kube,
    elector: LeaderElector,
    metrics: ReconcileMetrics,
    health: HealthState,
    stop: asyncio.Event,
) -> None:
    """Wait for the lease (when elected), then reconcile and autoscale until ``stop``."""
    election = config.leader_election
    renewing: asyncio.Task[None] | None = None
    if election.enabled:
        acquiring = asyncio.ensure_future(elector.acquire())
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait({acquiring, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not acquiring.done():
            acquiring.cancel()
            return
        acquiring.result()  # a missing lease namespace ends the command with its reason
        renewing = asyncio.create_task(elector.hold(), name="lease-renewal")
    health.leader = True
    metrics.leader.labels(name=election.name).set(1)
    reconciler = Reconciler(
        api=kube,
        catalog=catalog,
        pods=config.pods,
        unschedulable_deadline=config.unschedulable_deadline,
        credentials=config.credentials,
    )
    store = Store()
    controller = Controller(store=store, reconciler=reconciler, metrics=metrics)
    queue = controller.start()
    tenants: TenantController | None = None
    if config.tenants:
        tenants = TenantController(kube, reserved=config.reserved_namespaces)
        tenant_queue = tenants.start()
    settings = kopf.OperatorSettings()
    configure(settings, config)
    # ModelClusters come from kopf's watch; the children from the store's own informers.
    tasks = [asyncio.create_task(store.run(kube, config.namespaces, clusters=False), name="store")]
    if config.autoscaler is not None:
        autoscaler = Autoscaler(kube, catalog, config.autoscaler, store, metrics, credentials=config.credentials)
        tasks.append(asyncio.create_task(autoscaler.run(), name="autoscaler"))
    if config.pools and config.credentials is None:
        logger.warning("warm pools need the pod credential signing key: no pool is kept")
    elif config.pools and config.credentials is not None:
        pool = WarmPool(kube, catalog, resolve_pools(config.pools, catalog), config.pool_namespaces, store,
                        config.credentials, config.pods)  # fmt: skip
        tasks.append(asyncio.create_task(pool.run(), name="warm pool"))
    if config.tenant_policy is not None:
        policies = TenantPolicies(kube, config.tenant_policy, (election.namespace,), served=config.namespaces)
        tasks.append(asyncio.create_task(policies.run(), name="tenant network policies"))
    for task in tasks:
        task.add_done_callback(_report_end)
    try:
        await kopf.operator(
            registry=build_registry(store, tenants),
            settings=settings,
            standalone=True,
            clusterwide=config.clusterwide,
            namespaces=list(config.namespaces),
            stop_flag=stop,
        )
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await queue.close()
        if tenants is not None:
            await tenant_queue.close()
        if renewing is not None:
            renewing.cancel()
            await elector.release()
