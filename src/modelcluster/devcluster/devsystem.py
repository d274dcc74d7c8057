"""``modelcluster dev``: the whole system on the local control plane, in the foreground.

Starts (or reuses) the local cluster, installs the CRD, then runs the operator until
Ctrl-C. Components run as local processes against the cluster's admin kubeconfig.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click

from modelcluster.devcluster import controlplane
from modelcluster.devcluster.binaries import log
from modelcluster.devcluster.config import ClusterConfig, load_pod_commands
from modelcluster.devcluster.tools import ensure_tools

CRD_PATH = Path("crds") / "modelclusters.yaml"


@click.command()
@click.option("--name", default="dev", show_default=True, help="Cluster name.")
@click.option(
    "--pod-commands",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=Path("e2e") / "pod-commands.yaml",
    show_default=True,
    help="Image -> local command mapping for pods that really serve.",
)
def dev(name: str, pod_commands: Path) -> None:
    """Run the local control plane with the operator (Ctrl-C stops the operator; the cluster stays)."""
    tools = ensure_tools()
    config = ClusterConfig(name=name, pod_commands=load_pod_commands(pod_commands))
    kubeconfig = controlplane.up(config)
    env = dict(os.environ, KUBECONFIG=str(kubeconfig))
    subprocess.run([str(tools.kubectl), "apply", "--server-side", "-f", str(CRD_PATH)], env=env, check=True)
    click.echo(f"export KUBECONFIG={kubeconfig}")
    log("starting the operator (Ctrl-C to stop it; `make cluster-down` stops the cluster)")
    executable = Path(sys.executable).with_name("modelcluster")
    operator = subprocess.Popen([str(executable), "operator", "--no-leader-elect", "--metrics-port=8082"], env=env)
    try:
        operator.wait()
    except KeyboardInterrupt:
        operator.terminate()
        operator.wait()
