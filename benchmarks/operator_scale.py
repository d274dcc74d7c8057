"""Create many ModelClusters at once and measure how fast the operator converges them.

Starts (or reuses) a local control plane named ``bench``, installs the CRD, runs
``modelcluster operator`` as a real process, creates N ModelClusters concurrently and
prints: time until every Deployment exists, time until every status is set for the
current generation, reconciles per second (from the operator's own metrics) and the
operator's peak RSS (VmHWM), each beside its target.

    python benchmarks/operator_scale.py --count 1000
    python benchmarks/operator_scale.py --count 1000 --desired 1 --gpu-nodes 125   # with pods
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from kubernetes_asyncio import client as aclient
from kubernetes_asyncio import config as aconfig

from modelcluster.devcluster import controlplane
from modelcluster.devcluster.config import ClusterConfig
from modelcluster.devcluster.pki import Pki
from modelcluster.devcluster.tools import ensure_tools
from modelcluster.operator.naming import object_name

REPO = Path(__file__).resolve().parents[1]
GROUP, VERSION, PLURAL = "modelcluster.dev", "v1alpha1", "modelclusters"
TARGET_SECONDS = 30.0
TARGET_RSS_MIB = 300.0


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc status")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def apiserver_requests(config: ClusterConfig) -> float:
    """All requests the kube-apiserver has served (its apiserver_request_total counters)."""
    context = controlplane.admin_ssl_context(Pki(config.state_dir / "pki"))
    state = controlplane.read_state(config)
    assert state is not None
    text = httpx.get(f"{state['server']}/metrics", verify=context, timeout=10).text
    return sum(float(value) for value in re.findall(r"^apiserver_request_total\{[^}]*\} ([0-9.e+]+)$", text, re.M))


def reconcile_total(metrics_port: int) -> float:
    text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
    pattern = r"^controller_runtime_reconcile_total\{[^}]*\} ([0-9.e+]+)$"
    return sum(float(value) for value in re.findall(pattern, text, re.M))


async def raw(request: Any) -> dict[str, Any]:
    response = await request
    try:
        body: dict[str, Any] = json.loads(await response.read())
    finally:
        response.release()
    return body


async def create_all(api: aclient.CustomObjectsApi, namespace: str, count: int, desired: int) -> None:
    limit = asyncio.Semaphore(32)

    async def one(index: int) -> None:
        model = f"bench-org/model-{index:05d}"
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ModelCluster",
            "metadata": {"name": object_name(model)},
            "spec": {"model": model, "task": "text-classification", "capacity": {"desired": desired, "max": 1}},
        }
        async with limit:
            await api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)

    await asyncio.gather(*(one(i) for i in range(count)))


async def converge(kubeconfig: Path, namespace: str, count: int, desired: int) -> dict[str, float]:
    await aconfig.load_kube_config(config_file=str(kubeconfig))
    async with aclient.ApiClient() as api_client:
        await aclient.CoreV1Api(api_client).create_namespace({"metadata": {"name": namespace}})
        objects = aclient.CustomObjectsApi(api_client)
        apps = aclient.AppsV1Api(api_client)
        started = time.monotonic()
        await create_all(objects, namespace, count, desired)
        created = time.monotonic() - started
        deployments_at = statuses_at = None
        while deployments_at is None or statuses_at is None:
            elapsed = time.monotonic() - started
            if elapsed > 600:
                raise TimeoutError("not converged after 600 s")
            # Raw JSON, not the client's model classes: the poller must not steal the CPU it measures.
            if deployments_at is None:
                listing = await raw(apps.list_namespaced_deployment(namespace, _preload_content=False))
                if len(listing["items"]) >= count:
                    deployments_at = time.monotonic() - started
            if statuses_at is None:
                items = (
                    await raw(
                        objects.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, _preload_content=False)
                    )
                )["items"]
                done = sum(
                    1
                    for item in items
                    if (item.get("status") or {}).get("status")
                    and item["status"].get("observedGeneration") == item["metadata"]["generation"]
                )
                if done >= count:
                    statuses_at = time.monotonic() - started
            await asyncio.sleep(1.0)
        return {"created": created, "deployments": deployments_at, "statuses": statuses_at}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--desired", type=int, default=0, help="replicas per cluster (0: no pods, status stopped)")
    parser.add_argument("--gpu-nodes", type=int, default=4)
    parser.add_argument("--keep-cluster", action="store_true", help="leave the bench cluster running")
    args = parser.parse_args()

    ensure_tools()
    config = ClusterConfig(name="bench", gpu_nodes=args.gpu_nodes, cpu_nodes=0)
    controlplane.down(config)
    kubeconfig = controlplane.up(config)
    env = dict(os.environ, KUBECONFIG=str(kubeconfig))
    kubectl = str(ensure_tools().kubectl)
    subprocess.run(
        [kubectl, "apply", "--server-side", "-f", str(REPO / "crds" / "modelclusters.yaml")],
        env=env,
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [kubectl, "wait", "--for=condition=Established", "crd/modelclusters.modelcluster.dev"],
        env=env,
        check=True,
        capture_output=True,
    )
    subprocess.run([kubectl, "create", "namespace", "modelcluster-system"], env=env, capture_output=True)

    metrics_port, health_port = controlplane.free_port(), controlplane.free_port()
    log = Path(tempfile.gettempdir()) / "modelcluster-bench-operator.log"
    with log.open("wb") as output:
        operator = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("modelcluster")),
                "operator",
                f"--metrics-port={metrics_port}",
                f"--health-port={health_port}",
            ],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{health_port}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or operator.poll() is not None:
                raise RuntimeError(f"operator did not become ready; see {log}")
            time.sleep(0.2)
        idle_rss = peak_rss_mib(operator.pid)
        before = reconcile_total(metrics_port)
        cpu_before, requests_before = cpu_seconds(operator.pid), apiserver_requests(config)
        namespace = f"bench-{uuid.uuid4().hex[:6]}"
        times = asyncio.run(converge(kubeconfig, namespace, args.count, args.desired))
        reconciles = reconcile_total(metrics_port) - before
        operator_cpu = cpu_seconds(operator.pid) - cpu_before
        requests = apiserver_requests(config) - requests_before
        rss = peak_rss_mib(operator.pid)
    finally:
        operator.terminate()
        operator.wait(timeout=30)
        if not args.keep_cluster:
            controlplane.down(config)

    converged = max(times["deployments"], times["statuses"])
    print(
        f"\nModelClusters: {args.count} (desired {args.desired}), {args.gpu_nodes} GPU nodes, "
        f"{os.cpu_count()} CPUs; operator log {log}"
    )
    rows = [
        ("client: all creates accepted", f"{times['created']:.1f} s", "", ""),
        (
            "all Deployments exist",
            f"{times['deployments']:.1f} s",
            f"{TARGET_SECONDS:.0f} s",
            f"{times['deployments'] / TARGET_SECONDS:.2f}",
        ),
        (
            "every status set (this generation)",
            f"{times['statuses']:.1f} s",
            f"{TARGET_SECONDS:.0f} s",
            f"{times['statuses'] / TARGET_SECONDS:.2f}",
        ),
        ("reconciles / s (until converged)", f"{reconciles / converged:.1f}", "", ""),
        ("reconciles per cluster", f"{reconciles / args.count:.2f}", "", ""),
        ("apiserver requests per cluster (all clients)", f"{requests / args.count:.1f}", "", ""),
        ("operator CPU per cluster", f"{1000 * operator_cpu / args.count:.0f} ms", "", ""),
        ("operator CPU busy (of one core)", f"{100 * operator_cpu / converged:.0f} %", "", ""),
        ("operator RSS idle", f"{idle_rss:.0f} MiB", "", ""),
        ("operator peak RSS", f"{rss:.0f} MiB", f"{TARGET_RSS_MIB:.0f} MiB", f"{rss / TARGET_RSS_MIB:.2f}"),
    ]
    print(f"{'figure':<46} {'measured':>12} {'target':>10} {'measured/target':>16}")
    for name, value, target, ratio in rows:
        print(f"{name:<46} {value:>12} {target:>10} {ratio:>16}")


if __name__ == "__main__":
    main()
