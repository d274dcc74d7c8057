"""``modelcluster gateway``: the hosted API over ModelClusters, against $KUBECONFIG or in a pod."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import click

from modelcluster.cli_support import catalog_or_exit, configure_logging, pod_credentials_or_exit
from modelcluster.gateway.keys import ApiKeyRecord, bootstrap_record
from modelcluster.gateway.settings import (
    DEFAULT_KEY_MAX_STALENESS_S,
    DEFAULT_METRICS_PORT,
    DEFAULT_PORT,
    GatewaySettings,
)

BOOTSTRAP_KEY_ENV = "MODELCLUSTER_GATEWAY_BOOTSTRAP_KEY"


def _service(value: str | None) -> tuple[str, str] | None:
    if value is None:
        return None
    namespace, _, name = value.partition("/")
    if not namespace or not name:
        raise click.BadParameter("expected NAMESPACE/NAME", param_hint="--peers-service")
    return namespace, name


def _bootstrap_record(settings: GatewaySettings) -> ApiKeyRecord | None:
    key = os.environ.get(BOOTSTRAP_KEY_ENV, "")
    if settings.bootstrap_tenant is None:
        if key:
            raise click.ClickException(f"${BOOTSTRAP_KEY_ENV} is set but --bootstrap-tenant is not")
        return None
    if not key:
        raise click.ClickException(f"--bootstrap-tenant needs the key in ${BOOTSTRAP_KEY_ENV}")
    try:
        return bootstrap_record(key, settings.bootstrap_tenant, settings.bootstrap_concurrency, settings.key_namespace)
    except ValueError as error:
        raise click.ClickException(str(error)) from error


@click.command()
@click.option("--host", default="0.0.0.0", show_default=True, help="Address to listen on.")
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=int, help="Port of the API, /health and /ready.")
@click.option(
    "--metrics-port",
    envvar="MODELCLUSTER_GATEWAY_METRICS_PORT",
    default=DEFAULT_METRICS_PORT,
    show_default=True,
    type=int,
    help="Port of /metrics (Prometheus), kept off the API port (env MODELCLUSTER_GATEWAY_METRICS_PORT).",
)
@click.option(
    "--key-namespace",
    envvar="MODELCLUSTER_NAMESPACE",
    default="modelcluster-system",
    show_default=True,
    help="Namespace of the API key Secrets.",
)
@click.option(
    "--catalog",
    "catalog_paths",
    multiple=True,
    type=click.Path(exists=True, path_type=Path),
    help="Extra catalog file, or a directory such as a mounted ConfigMap (repeatable).",
)
@click.option("--hold-timeout", type=float, default=300.0, show_default=True, help="Seconds a request waits to start.")
@click.option(
    "--key-max-staleness",
    envvar="MODELCLUSTER_GATEWAY_KEY_MAX_STALENESS_S",
    type=click.FloatRange(min=0, min_open=True),
    default=DEFAULT_KEY_MAX_STALENESS_S,
    show_default=True,
    help="Seconds the API key table may go unconfirmed by the apiserver before API requests and /ready get 503 "
    "(env MODELCLUSTER_GATEWAY_KEY_MAX_STALENESS_S).",
)
@click.option(
    "--replicas",
    type=int,
    default=1,
    show_default=True,
    help="Replicas sharing key limits (without --peers-service).",
)
@click.option(
    "--peers-service",
    default=None,
    help="NAMESPACE/NAME of the gateway's own Service: its ready endpoints are the replicas that share each key's "
    "limit (followed as they change; wins over --replicas).",
)
@click.option(
    "--bootstrap-tenant",
    default=None,
    help=f"Accept the key in ${BOOTSTRAP_KEY_ENV} (never a flag) for this tenant namespace.",
)
@click.option("--bootstrap-concurrency", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def gateway(
    host: str,
    port: int,
    metrics_port: int,
    key_namespace: str,
    catalog_paths: tuple[Path, ...],
    hold_timeout: float,
    key_max_staleness: float,
    replicas: int,
    peers_service: str | None,
    bootstrap_tenant: str | None,
    bootstrap_concurrency: int,
    verbose: bool,
) -> None:
    """Serve the Bytez model API (and OpenAI-compatible routes) over the cluster's ModelClusters."""
    configure_logging(verbose)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    catalog = catalog_or_exit(catalog_paths)
    credentials = pod_credentials_or_exit()
    settings = GatewaySettings(
        host=host,
        port=port,
        metrics_port=metrics_port,
        key_namespace=key_namespace,
        catalog=catalog_paths,
        hold_timeout_s=hold_timeout,
        key_max_staleness_s=key_max_staleness,
        replicas=replicas,
        peers_service=_service(peers_service),
        bootstrap_tenant=bootstrap_tenant,
        bootstrap_concurrency=bootstrap_concurrency,
    )
    bootstrap = _bootstrap_record(settings)
    from modelcluster.gateway.event_loop import run_with
    from modelcluster.gateway.server import serve  # aiohttp and the client load only when running

    run_with(settings.event_loop, serve(settings, catalog, credentials, bootstrap))
