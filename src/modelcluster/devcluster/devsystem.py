"""``modelcluster dev``: the whole system on the local control plane, in the foreground.

Starts (or reuses) the local cluster, installs the CRD, runs the operator and creates a
ModelCluster for all-MiniLM-L6-v2, which a process-backed runtime pod serves offline.
Components run as local processes against the cluster's admin kubeconfig.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import yaml

from modelcluster.devcluster import controlplane
from modelcluster.devcluster.binaries import log
from modelcluster.devcluster.config import ClusterConfig, load_pod_commands
from modelcluster.devcluster.offline_models import MODEL_ID
from modelcluster.devcluster.tools import ensure_tools
from modelcluster.operator.naming import object_name

CRD_PATH = Path("crds") / "modelclusters.yaml"
SAMPLE_NAMESPACE = "default"


def sample_cluster() -> dict[str, Any]:
    """A ModelCluster for the small model that the local cluster serves offline."""
    return {
        "apiVersion": "modelcluster.dev/v1alpha1",
        "kind": "ModelCluster",
        "metadata": {"name": object_name(MODEL_ID), "namespace": SAMPLE_NAMESPACE},
        "spec": {"model": MODEL_ID, "capacity": {"min": 1, "desired": 1, "max": 1}},
    }


@click.command()
@click.option("--name", default="dev", show_default=True, help="Cluster name.")
@click.option(
    "--pod-commands",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=Path("e2e") / "pod-commands.yaml",
    show_default=True,
    help="Image -> local command mapping for pods that really serve.",
)
@click.option("--sample/--no-sample", default=True, show_default=True, help="Create the all-MiniLM-L6-v2 cluster.")
def dev(name: str, pod_commands: Path, sample: bool) -> None:
    """Run the local control plane with the operator and a small offline model.

    Ctrl-C stops the operator; the cluster keeps running until `make cluster-down`.
    """
    tools = ensure_tools()
    config = ClusterConfig(name=name, pod_commands=load_pod_commands(pod_commands))
    kubeconfig = controlplane.up(config)
    env = dict(os.environ, KUBECONFIG=str(kubeconfig))
    subprocess.run([str(tools.kubectl), "apply", "--server-side", "-f", str(CRD_PATH)], env=env, check=True)
    click.echo(f"export KUBECONFIG={kubeconfig}")
    log("starting the operator (Ctrl-C to stop it; `make cluster-down` stops the cluster)")
    executable = Path(sys.executable).with_name("modelcluster")
    operator = subprocess.Popen([str(executable), "operator", "--no-leader-elect", "--metrics-port=8082"], env=env)
    if sample:
        document = yaml.safe_dump(sample_cluster(), sort_keys=False)
        subprocess.run([str(tools.kubectl), "apply", "-f", "-"], input=document, text=True, env=env, check=True)
        log(
            f"{MODEL_ID} is starting in namespace {SAMPLE_NAMESPACE}: `kubectl get mc -n {SAMPLE_NAMESPACE}`; "
            f"once running, POST to http://<pod IP>:8000/run (`kubectl get pods -n {SAMPLE_NAMESPACE} -o wide`)"
        )
    try:
        operator.wait()
    except KeyboardInterrupt:
        operator.terminate()
        operator.wait()
