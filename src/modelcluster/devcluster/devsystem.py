"""``modelcluster dev``: the whole system on the local control plane, in the foreground.

Starts (or reuses) the local cluster, installs the CRD, runs the operator and the gateway
(on :8080) as local processes against the cluster's admin kubeconfig, makes a dev API key
(kept under the cluster's state directory and reused while its Secret exists), and creates
a ModelCluster for all-MiniLM-L6-v2, which a process-backed runtime pod serves offline.
"""

from __future__ import annotations

import os
import signal
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
from modelcluster.devcluster.tiny_models import MODEL_ID as CHAT_MODEL_ID
from modelcluster.devcluster.tools import ensure_tools
from modelcluster.gateway.keys import key_id_of
from modelcluster.operator.naming import object_name

CRD_PATH = Path("crds") / "modelclusters.yaml"
DEV_TENANT = "dev"
SYSTEM_NAMESPACE = "modelcluster-system"
GATEWAY_PORT = 8080


def sample_cluster() -> dict[str, Any]:
    """A ModelCluster for the small model that the local cluster serves offline."""
    return {
        "apiVersion": "modelcluster.dev/v1alpha1",
        "kind": "ModelCluster",
        "metadata": {"name": object_name(MODEL_ID), "namespace": DEV_TENANT},
        "spec": {"model": MODEL_ID, "capacity": {"min": 1, "desired": 1, "max": 1}},
    }


def dev_key(executable: Path, env: dict[str, str], saved: Path) -> str:
    """The dev tenant's API key: the saved one while its Secret exists, else a new one (saved, mode 0600)."""
    listed = subprocess.run(
        [str(executable), "keys", "list", f"--tenant={DEV_TENANT}"], env=env, check=True, capture_output=True, text=True
    ).stdout
    if saved.is_file():
        key = saved.read_text().strip()
        key_id = key_id_of(key)
        if key_id is not None and key_id in listed.split():
            return key
    created = subprocess.run(
        [str(executable), "keys", "create", f"--tenant={DEV_TENANT}", "--concurrency=64"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    key = created.stdout.strip().splitlines()[-1]
    saved.touch(mode=0o600)
    saved.write_text(key + "\n")
    return key


def try_this(key_env: str) -> str:
    auth = f'-H "Authorization: Key ${key_env}"'
    base = f"http://localhost:{GATEWAY_PORT}/models/v2"
    return "\n".join(
        [
            "try this:",
            f"  curl -s {base}/list/clusters {auth}",
            f'  curl -s {base}/{MODEL_ID} {auth} -d \'{{"text": "a cat sits on the mat"}}\'',
            f'  curl -sN {base}/{CHAT_MODEL_ID} {auth} -d \'{{"input": "hello", "stream": true}}\'',
            "  kubectl get mc -A",
        ]
    )


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


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
    """Run the local control plane with the operator, the gateway on :8080 and a small offline model.

    Ctrl-C stops the operator and the gateway; the cluster keeps running until `make cluster-down`.
    """
    tools = ensure_tools()
    config = ClusterConfig(name=name, pod_commands=load_pod_commands(pod_commands))
    kubeconfig = controlplane.up(config)
    env = dict(os.environ, KUBECONFIG=str(kubeconfig))
    kubectl = [str(tools.kubectl)]
    subprocess.run([*kubectl, "apply", "--server-side", "-f", str(CRD_PATH)], env=env, check=True)
    subprocess.run(
        [*kubectl, "wait", "--for=condition=Established", "crd/modelclusters.modelcluster.dev"], env=env, check=True
    )
    executable = Path(sys.executable).with_name("modelcluster")
    key = dev_key(executable, env, kubeconfig.parent / "api-key")
    log("starting the operator and the gateway (Ctrl-C stops them; `make cluster-down` stops the cluster)")
    operator = subprocess.Popen(
        [
            str(executable),
            "operator",
            "--no-leader-elect",
            "--metrics-port=8082",
            "--health-port=8081",
            f"--gateway-metrics-url=http://127.0.0.1:{GATEWAY_PORT}/metrics",
        ],
        env=env,
    )
    gateway = subprocess.Popen([str(executable), "gateway", f"--port={GATEWAY_PORT}"], env=env)
    if sample:
        document = yaml.safe_dump(sample_cluster(), sort_keys=False)
        subprocess.run([*kubectl, "apply", "-f", "-"], input=document, text=True, env=env, check=True)
    click.echo(f"export KUBECONFIG={kubeconfig}")
    click.echo(f"export MODELCLUSTER_API_KEY={key}")
    click.echo(try_this("MODELCLUSTER_API_KEY"))
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        operator.wait()
    except KeyboardInterrupt:
        pass
    finally:
        for process in (gateway, operator):
            process.terminate()
        for process in (gateway, operator):
            process.wait()
