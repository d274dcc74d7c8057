"""``modelcluster operator``: run the ModelCluster operator against the cluster in KUBECONFIG."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import uuid
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import click

from modelcluster.api.tenant_policy import TenantPolicyConfig
from modelcluster.catalog import Catalog
from modelcluster.cli_support import catalog_or_exit, configure_logging, pod_credentials_or_exit
from modelcluster.operator.autoscaling.config import AutoscalerConfig
from modelcluster.operator.builders.warm_pool import PoolSpec
from modelcluster.operator.config import LeaderElectionConfig, OperatorConfig


def _default_identity() -> str:
    return os.environ.get("POD_NAME") or f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"


def _service(value: str | None) -> tuple[str, str] | None:
    if value is None:
        return None
    namespace, _, name = value.partition("/")
    if not namespace or not name:
        raise click.BadParameter("expected NAMESPACE/NAME", param_hint="--gateway-service")
    return namespace, name


def _json_list(value: str | None, option: str) -> tuple[dict[str, Any], ...] | None:
    if value is None:
        return None
    try:
        parsed = json.loads(value)
    except ValueError as error:
        raise click.BadParameter(f"not JSON: {error}", param_hint=option) from error
    if not isinstance(parsed, list) or not all(isinstance(item, dict) for item in parsed):
        raise click.BadParameter("expected a JSON list of objects", param_hint=option)
    return tuple(parsed)


def _tenant_policy(platform: str, model_sources: str | None, dns_peers: str | None) -> TenantPolicyConfig:
    config = TenantPolicyConfig(platform_namespace=platform)
    sources = _json_list(model_sources, "--model-sources")
    peers = _json_list(dns_peers, "--dns-peers")
    if sources is not None:
        config = replace(config, model_sources=sources)
    if peers is not None:
        config = replace(config, dns_peers=peers)
    return config


def _reserved(lease: str, named: tuple[str, ...], gateway: tuple[str, str] | None) -> tuple[str, ...]:
    """The operator's own namespaces no Tenant may have: the lease's, the gateway's and those named."""
    found = [lease, *named]
    if gateway is not None:
        found.append(gateway[0])
    return tuple(dict.fromkeys(found))


def _pools(given: tuple[str, ...], namespaces: tuple[str, ...], catalog: Catalog) -> tuple[PoolSpec, ...]:
    """The warm pools of ``--warm-pool`` (empty ones dropped), checked against the catalog."""
    from modelcluster.operator.builders.warm_pool import parse_pool, resolve_pools

    try:
        specs = tuple(spec for spec in (parse_pool(text) for text in given) if spec.size > 0)
        resolve_pools(specs, catalog)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--warm-pool") from error
    if specs and not namespaces:
        raise click.BadParameter("a warm pool needs at least one --warm-pool-namespace", param_hint="--warm-pool")
    return specs


@click.command()
@click.option(
    "-n",
    "--namespace",
    "namespaces",
    multiple=True,
    envvar="MODELCLUSTER_NAMESPACES",
    help="Namespace to serve (repeatable): only these are watched, so Roles there suffice "
    "(operator/rbac-namespaced.yaml). Default: all namespaces.",
)
@click.option(
    "--catalog",
    "catalog_paths",
    multiple=True,
    envvar="MODELCLUSTER_CATALOG",
    type=click.Path(exists=True, path_type=Path),
    help="Extra catalog file, or a directory such as a mounted ConfigMap (repeatable).",
)
@click.option("--metrics-port", default=8082, show_default=True, envvar="MODELCLUSTER_METRICS_PORT")
@click.option("--health-port", default=8081, show_default=True, envvar="MODELCLUSTER_HEALTH_PORT")
@click.option(
    "--unschedulable-deadline",
    default=300,
    show_default=True,
    type=click.IntRange(min=1),
    envvar="MODELCLUSTER_UNSCHEDULABLE_DEADLINE",
    help="Seconds a pod may stay unschedulable before the cluster is reported failed.",
)
@click.option(
    "--workers",
    default=256,
    show_default=True,
    type=click.IntRange(min=1),
    help="Objects handled concurrently per resource.",
)
@click.option(
    "--leader-elect/--no-leader-elect",
    default=True,
    show_default=True,
    help="Hold a Lease so only one operator is active.",
)
@click.option("--lease-namespace", envvar="POD_NAMESPACE", default="modelcluster-system", show_default=True)
@click.option("--lease-name", default="modelcluster-operator", show_default=True)
@click.option("--identity", default=_default_identity, help="Holder identity in the Lease. Default: $POD_NAME.")
@click.option("--autoscale/--no-autoscale", default=True, show_default=True, help="Run the central autoscaler.")
@click.option("--scale-tick", type=float, default=1.0, show_default=True, help="Seconds between autoscaler ticks.")
@click.option(
    "--gateway-metrics-url",
    "gateway_urls",
    multiple=True,
    help="/metrics URL of a gateway whose demand the autoscaler reads (repeatable).",
)
@click.option(
    "--gateway-service",
    default=None,
    help="NAMESPACE/NAME of the gateway metrics Service: its ready endpoints' /metrics (the Service's port named "
    "`metrics`, else 8083) are read each tick.",
)
@click.option(
    "--tenant-network-policy/--no-tenant-network-policy",
    default=True,
    show_default=True,
    help="Apply the tenant NetworkPolicy to every tenant namespace (docs/security.md).",
)
@click.option(
    "--model-sources",
    default=None,
    envvar="MODELCLUSTER_MODEL_SOURCES",
    help="JSON list of NetworkPolicy egress rules (`to`, `ports`) model pods may use besides DNS. "
    "Default: HTTPS to public addresses.",
)
@click.option(
    "--dns-peers",
    default=None,
    envvar="MODELCLUSTER_DNS_PEERS",
    help="JSON list of NetworkPolicy peers that resolve names for model pods. Default: kube-dns in kube-system.",
)
@click.option(
    "--tenants/--no-tenants",
    default=None,
    help="Reconcile Tenants into namespaces and ResourceQuotas (needs the cluster-wide RBAC). "
    "Default: on when serving all namespaces.",
)
@click.option(
    "--reserved-namespace",
    "reserved_namespaces",
    multiple=True,
    envvar="MODELCLUSTER_RESERVED_NAMESPACES",
    help="A namespace no Tenant may have (repeatable), besides the system ones and the lease namespace: the gateway's.",
)
@click.option(
    "--warm-pool",
    "warm_pools",
    multiple=True,
    envvar="MODELCLUSTER_WARM_POOLS",
    help="A warm pool FAMILY/TIER=SIZE[@IMAGE] (repeatable): standby runtimes a woken cluster of that family and "
    "tier borrows while its own pod starts (see docs/autoscaling.md). Default: none.",
)
@click.option(
    "--warm-pool-namespace",
    "warm_pool_namespaces",
    multiple=True,
    envvar="MODELCLUSTER_WARM_POOL_NAMESPACES",
    help="A namespace whose clusters get the warm pools (repeatable); each pool is kept filled in each.",
)
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def operator(
    namespaces: tuple[str, ...],
    catalog_paths: tuple[Path, ...],
    metrics_port: int,
    health_port: int,
    unschedulable_deadline: int,
    workers: int,
    leader_elect: bool,
    lease_namespace: str,
    lease_name: str,
    identity: str,
    autoscale: bool,
    scale_tick: float,
    gateway_urls: tuple[str, ...],
    gateway_service: str | None,
    tenant_network_policy: bool,
    model_sources: str | None,
    dns_peers: str | None,
    tenants: bool | None,
    reserved_namespaces: tuple[str, ...],
    warm_pools: tuple[str, ...],
    warm_pool_namespaces: tuple[str, ...],
    verbose: bool,
) -> None:
    """Run the ModelCluster operator (in a pod, or against the cluster in KUBECONFIG)."""
    configure_logging(verbose)
    if not verbose:
        # kopf logs a line per handled event at INFO; under load that is most of the output.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    catalog = catalog_or_exit(catalog_paths)
    credentials = pod_credentials_or_exit()
    pools = _pools(warm_pools, warm_pool_namespaces, catalog)
    config = OperatorConfig(
        namespaces=namespaces,
        catalog_paths=catalog_paths,
        metrics_port=metrics_port,
        health_port=health_port,
        unschedulable_deadline=timedelta(seconds=unschedulable_deadline),
        workers=workers,
        leader_election=LeaderElectionConfig(
            enabled=leader_elect, namespace=lease_namespace, name=lease_name, identity=identity
        ),
        autoscaler=AutoscalerConfig(
            tick_s=scale_tick, gateway_urls=gateway_urls, gateway_service=_service(gateway_service)
        )
        if autoscale
        else None,
        credentials=credentials,
        tenant_policy=_tenant_policy(lease_namespace, model_sources, dns_peers) if tenant_network_policy else None,
        tenants=not namespaces if tenants is None else tenants,
        reserved_namespaces=_reserved(lease_namespace, reserved_namespaces, _service(gateway_service)),
        pools=pools,
        pool_namespaces=warm_pool_namespaces if pools else (),
    )
    from modelcluster.operator.controller.leader import LeaseNamespaceMissing
    from modelcluster.operator.run import run_operator  # kopf and the client load only when running

    try:
        asyncio.run(run_operator(config, catalog))
    except LeaseNamespaceMissing as error:
        raise click.ClickException(str(error)) from error
