"""``modelcluster cluster up|down|status|build``: the local control plane."""

from __future__ import annotations

from pathlib import Path

import click

from modelcluster.devcluster import controlplane, netguard
from modelcluster.devcluster.binaries import ensure_binaries
from modelcluster.devcluster.config import ClusterConfig, load_pod_commands
from modelcluster.devcluster.tools import ensure_tools


def _config(
    name: str,
    pod_commands: Path | None,
    gpu_nodes: int,
    gpus_per_node: int,
    cpu_nodes: int,
    small_gpu_nodes: int,
    run_images: bool = False,
) -> ClusterConfig:
    return ClusterConfig(
        run_images=run_images,
        name=name,
        gpu_nodes=gpu_nodes,
        gpus_per_node=gpus_per_node,
        cpu_nodes=cpu_nodes,
        small_gpu_nodes=small_gpu_nodes,
        pod_commands=load_pod_commands(pod_commands) if pod_commands else {},
    )


@click.group()
def cluster() -> None:
    """A local Kubernetes control plane with simulated GPU nodes (built from source once)."""


@cluster.command()
@click.option("--name", default="dev", show_default=True, help="Cluster name; clusters can run side by side.")
@click.option(
    "--pod-commands",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="YAML mapping of image -> {command, env}: pods of these images run as local processes.",
)
@click.option("--gpu-nodes", default=4, show_default=True, help="Nodes with 80 GB GPUs.")
@click.option("--small-gpu-nodes", default=1, show_default=True, help="Nodes with 24 GB GPUs.")
@click.option("--gpus-per-node", default=8, show_default=True)
@click.option("--cpu-nodes", default=1, show_default=True)
@click.option("--run-images", is_flag=True, help="Pods of images built by `make images` run those images with runc.")
def up(
    name: str,
    pod_commands: Path | None,
    gpu_nodes: int,
    small_gpu_nodes: int,
    gpus_per_node: int,
    cpu_nodes: int,
    run_images: bool,
) -> None:
    """Start the cluster (idempotent) and print the KUBECONFIG line."""
    ensure_tools()
    config = _config(name, pod_commands, gpu_nodes, gpus_per_node, cpu_nodes, small_gpu_nodes, run_images)
    kubeconfig = controlplane.up(config)
    click.echo(f"export KUBECONFIG={kubeconfig}")


@cluster.command()
@click.option("--name", default="dev", show_default=True)
def down(name: str) -> None:
    """Stop every process of the cluster and free its ports."""
    controlplane.down(ClusterConfig(name=name))


@cluster.command()
@click.option("--name", default="dev", show_default=True)
def status(name: str) -> None:
    """Say whether the cluster runs."""
    config = ClusterConfig(name=name)
    if controlplane.running(config):
        click.echo(f"running; export KUBECONFIG={config.kubeconfig}")
    else:
        raise click.ClickException(f"cluster {name!r} is not running")


@cluster.command()
@click.option("--name", default="dev", show_default=True)
def egress(name: str) -> None:
    """Say what the egress guard refused: connections the cluster's processes tried off this machine."""
    config = ClusterConfig(name=name)
    if not netguard.installed(config):
        raise click.ClickException(f"cluster {name!r} has no egress guard installed (is it running?)")
    found = netguard.report(config)
    click.echo(controlplane.egress_summary(config))
    for refusal in found.destinations:
        click.echo(f"  {refusal}")
    if not found.clean:
        raise SystemExit(1)


@cluster.command()
def build() -> None:
    """Build (or find cached) binaries and unpack kubectl and helm."""
    binaries = ensure_binaries()
    tools = ensure_tools()
    click.echo(f"binaries: {binaries.directory}\nkubectl: {tools.kubectl}\nhelm: {tools.helm}")
