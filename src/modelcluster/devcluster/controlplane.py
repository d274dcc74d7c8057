"""Start and stop the local control plane: etcd, kube-apiserver, controller-manager, scheduler, KWOK.

Every process runs from the cached binaries with its state under the cluster's state
directory (``~/.cache/modelcluster/clusters/<name>``); ports are picked free at start and
recorded in ``state.json``. Starting a running cluster only checks it and prints the
kubeconfig line again.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import yaml

from modelcluster.devcluster import netguard, podnet, processes
from modelcluster.devcluster.binaries import ensure_binaries, log
from modelcluster.devcluster.config import ClusterConfig
from modelcluster.devcluster.nodes import node_pool
from modelcluster.devcluster.offline_models import PACKAGE, seed_hub_cache
from modelcluster.devcluster.pki import Pki, generate
from modelcluster.devcluster.stages import stage_documents
from modelcluster.devcluster.tiny_models import seed_tiny_chat
from modelcluster.devcluster.tiny_tasks import seed_tiny_models
from modelcluster.devcluster.versions import Binaries, cache_root

COMPONENTS = ("podrunner", "kwok", "kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd")
START_TIMEOUT = 120.0
#: Starts of a cluster whose chosen port another process took in the meantime (then new ports are chosen).
START_ATTEMPTS = 3


class PortTaken(RuntimeError):
    """A component exited because a port chosen for it was taken between choosing and binding."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _state_path(config: ClusterConfig) -> Path:
    return config.state_dir / "state.json"


def read_state(config: ClusterConfig) -> dict[str, Any] | None:
    try:
        state: dict[str, Any] = json.loads(_state_path(config).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return state


def kubeconfig_document(server: str, pki: Pki) -> dict[str, Any]:
    """An admin kubeconfig with certificate files referenced by absolute path."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "modelcluster", "cluster": {"server": server, "certificate-authority": str(pki.ca_cert)}}
        ],
        "users": [
            {"name": "admin", "user": {"client-certificate": str(pki.admin_cert), "client-key": str(pki.admin_key)}}
        ],
        "contexts": [{"name": "modelcluster", "context": {"cluster": "modelcluster", "user": "admin"}}],
        "current-context": "modelcluster",
    }


def admin_ssl_context(pki: Pki) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca_cert))
    context.load_cert_chain(str(pki.admin_cert), str(pki.admin_key))
    return context


def apiserver_ready(config: ClusterConfig) -> bool:
    state = read_state(config)
    if state is None:
        return False
    pki = Pki(config.state_dir / "pki")
    try:
        response = httpx.get(f"{state['server']}/readyz", verify=admin_ssl_context(pki), timeout=2.0)
    except (httpx.HTTPError, OSError):
        return False
    return response.status_code == 200


def running(config: ClusterConfig) -> bool:
    run_dir = config.state_dir / "run"
    return all(processes.read_pid(run_dir, name) is not None for name in COMPONENTS) and apiserver_ready(config)


def _wait(what: str, check: Callable[[], bool], run_dir: Path, component: str, timeout: float = START_TIMEOUT) -> None:
    started = time.monotonic()
    deadline = started + timeout
    while time.monotonic() < deadline:
        if check():
            log(f"{what}: ready in {time.monotonic() - started:.1f}s")
            return
        if processes.read_pid(run_dir, component) is None:
            raise _exited(run_dir, component)
        time.sleep(0.2)
    raise TimeoutError(f"{what} not ready after {timeout:.0f}s:\n{processes.log_tail(run_dir, component)}")


def _exited(run_dir: Path, component: str) -> RuntimeError:
    """The error of a component that exited during the start: :class:`PortTaken` when its port was taken."""
    tail = processes.log_tail(run_dir, component)
    failure = PortTaken if "address already in use" in tail.lower() else RuntimeError
    return failure(f"{component} exited during start:\n{tail}")


def _all_running(run_dir: Path) -> None:
    """Every component still runs (the scheduler and the controller-manager bind their ports unwaited for)."""
    for component in COMPONENTS:
        if processes.read_pid(run_dir, component) is None:
            raise _exited(run_dir, component)


def _http_ok(url: str, verify: ssl.SSLContext | bool = False) -> Callable[[], bool]:
    def check() -> bool:
        try:
            return httpx.get(url, verify=verify, timeout=2.0).status_code == 200
        except (httpx.HTTPError, OSError):
            return False

    return check


def _argv_etcd(binaries: Binaries, data: Path, client: int, peer: int) -> list[str]:
    return [
        str(binaries.etcd),
        "--name=etcd0",
        f"--data-dir={data}",
        f"--listen-client-urls=http://127.0.0.1:{client}",
        f"--advertise-client-urls=http://127.0.0.1:{client}",
        f"--listen-peer-urls=http://127.0.0.1:{peer}",
        f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
        f"--initial-cluster=etcd0=http://127.0.0.1:{peer}",
        "--unsafe-no-fsync",
        "--quota-backend-bytes=8589934592",
        "--log-level=warn",
    ]


def _argv_apiserver(binaries: Binaries, config: ClusterConfig, pki: Pki, etcd: int, port: int) -> list[str]:
    return [
        str(binaries.kube_apiserver),
        f"--etcd-servers=http://127.0.0.1:{etcd}",
        "--bind-address=127.0.0.1",
        f"--secure-port={port}",
        # A loopback advertise address is fine for a single local apiserver, but then the
        # `kubernetes` Service endpoints must not be reconciled (they refuse loopback).
        "--advertise-address=127.0.0.1",
        "--endpoint-reconciler-type=none",
        f"--tls-cert-file={pki.serving_cert}",
        f"--tls-private-key-file={pki.serving_key}",
        f"--client-ca-file={pki.ca_cert}",
        f"--service-account-key-file={pki.service_account_pub}",
        f"--service-account-signing-key-file={pki.service_account_key}",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-cluster-ip-range={config.service_cidr}",
        "--authorization-mode=Node,RBAC",
        "--allow-privileged=true",
        "--enable-priority-and-fairness=false",
        "--profiling=false",
        "--v=1",
    ]


def _argv_controller_manager(binaries: Binaries, kubeconfig: Path, pki: Pki, port: int) -> list[str]:
    return [
        str(binaries.kube_controller_manager),
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        "--bind-address=127.0.0.1",
        f"--secure-port={port}",
        "--leader-elect=false",
        f"--service-account-private-key-file={pki.service_account_key}",
        f"--root-ca-file={pki.ca_cert}",
        f"--cluster-signing-cert-file={pki.ca_cert}",
        f"--cluster-signing-key-file={pki.ca_key}",
        "--use-service-account-credentials=false",
        "--controllers=*,-nodeipam",
        "--concurrent-deployment-syncs=10",
        "--concurrent-replicaset-syncs=10",
        "--concurrent-gc-syncs=20",
        "--kube-api-qps=200",
        "--kube-api-burst=400",
        "--v=1",
    ]


def _argv_scheduler(binaries: Binaries, kubeconfig: Path, port: int) -> list[str]:
    return [
        str(binaries.kube_scheduler),
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        "--bind-address=127.0.0.1",
        f"--secure-port={port}",
        "--leader-elect=false",
        "--kube-api-qps=200",
        "--kube-api-burst=400",
        "--v=1",
    ]


def _argv_kwok(binaries: Binaries, config: ClusterConfig, kubeconfig: Path, stages: Path, port: int) -> list[str]:
    return [
        str(binaries.kwok),
        f"--kubeconfig={kubeconfig}",
        f"--config={stages}",
        "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
        f"--cidr={config.simulated_pod_cidr}",
        f"--node-ip={config.simulated_node_ip}",
        "--node-lease-duration-seconds=40",
        f"--server-address=127.0.0.1:{port}",
    ]


def _create_nodes(config: ClusterConfig) -> None:
    from kubernetes import client as k8s
    from kubernetes import config as k8s_config
    from kubernetes.client.exceptions import ApiException

    api = k8s.CoreV1Api(k8s_config.new_client_from_config(config_file=str(config.kubeconfig)))
    for node in node_pool(config.gpu_nodes, config.gpus_per_node, config.cpu_nodes, config.small_gpu_nodes):
        try:
            api.create_node(node)
        except ApiException as error:
            if error.status != 409:
                raise

    expected = config.gpu_nodes + config.small_gpu_nodes + config.cpu_nodes

    def nodes_ready() -> bool:
        ready = 0
        for item in api.list_node(label_selector="type=kwok").items:
            conditions = {c.type: c.status for c in (item.status.conditions or [])}
            ready += conditions.get("Ready") == "True"
        return ready == expected

    def default_service_account() -> bool:
        try:
            api.read_namespaced_service_account("default", "default")
        except ApiException:
            return False
        return True

    _wait(f"{expected} nodes", nodes_ready, config.state_dir / "run", "kwok")
    _wait("default service account", default_service_account, config.state_dir / "run", "kube-controller-manager")


def up(config: ClusterConfig) -> Path:
    """Start the cluster unless it runs already; return the kubeconfig path."""
    if running(config) and netguard.installed(config):
        netguard.confine(config)
        log(f"cluster {config.name!r} is already running")
        return config.kubeconfig
    if read_state(config) is not None:
        log(f"cluster {config.name!r} is partly running; stopping what is left first")
        down(config)
    binaries = ensure_binaries()
    for attempt in range(1, START_ATTEMPTS + 1):
        guard(config)
        try:
            _start(config, binaries)
        except PortTaken as taken:
            log(f"cluster {config.name!r}: a chosen port was taken before its component bound it; stopping")
            down(config)
            if attempt == START_ATTEMPTS:
                raise
            log(f"starting cluster {config.name!r} again with new ports ({taken.args[0].splitlines()[0]})")
            continue
        except BaseException:
            log(f"cluster {config.name!r} failed to start; stopping what was started")
            down(config)
            raise
        break
    return config.kubeconfig


def guard(config: ClusterConfig) -> None:
    """Close the cluster's simulated ranges, install its egress guard and put this process under it."""
    new = netguard.install(config)
    netguard.confine(config)
    if not new:
        return
    ranges = ", ".join(str(network) for network in netguard.closed_ranges(config))
    log(f"closed {ranges} with unreachable routes; egress guard nft table {netguard.table_name(config)} is on")


def egress_summary(config: ClusterConfig) -> str:
    """One line on what the egress guard refused so far."""
    found = netguard.report(config)
    if found.clean:
        return "egress guard: no process of the cluster tried to reach an address off this machine"
    shown = ", ".join(str(refusal) for refusal in found.destinations[:20])
    return f"egress guard: refused {found.packets} packets off this machine, to {shown}"


def _start(config: ClusterConfig, binaries: Binaries) -> None:
    started = time.monotonic()
    state_dir = config.state_dir
    run_dir = state_dir / "run"
    for stale in ("etcd-data", "run"):
        shutil.rmtree(state_dir / stale, ignore_errors=True)
    run_dir.mkdir(parents=True)
    log(f"starting cluster {config.name!r} in {state_dir}")
    pki = generate(state_dir / "pki", config.service_ip, (str(podnet.gateway(config)),))
    ports = {
        name: free_port() for name in ("etcd", "etcd-peer", "apiserver", "controller-manager", "scheduler", "kwok")
    }
    server = f"https://127.0.0.1:{ports['apiserver']}"
    config.kubeconfig.write_text(yaml.safe_dump(kubeconfig_document(server, pki), sort_keys=False))
    config.kubeconfig.chmod(0o600)
    (state_dir / "config.json").write_text(config.model_dump_json(indent=2))
    _state_path(config).write_text(json.dumps({"server": server, "ports": ports}, indent=2))

    processes.start(run_dir, "etcd", _argv_etcd(binaries, state_dir / "etcd-data", ports["etcd"], ports["etcd-peer"]))
    _wait("etcd", _http_ok(f"http://127.0.0.1:{ports['etcd']}/health"), run_dir, "etcd")
    processes.start(
        run_dir, "kube-apiserver", _argv_apiserver(binaries, config, pki, ports["etcd"], ports["apiserver"])
    )
    _wait("kube-apiserver", lambda: apiserver_ready(config), run_dir, "kube-apiserver")
    processes.start(
        run_dir,
        "kube-controller-manager",
        _argv_controller_manager(binaries, config.kubeconfig, pki, ports["controller-manager"]),
    )
    processes.start(run_dir, "kube-scheduler", _argv_scheduler(binaries, config.kubeconfig, ports["scheduler"]))
    stages = state_dir / "kwok-stages.yaml"
    stages.write_text(
        yaml.safe_dump_all(stage_documents(binaries.stages, sorted(config.pod_commands)), sort_keys=False)
    )
    processes.start(run_dir, "kwok", _argv_kwok(binaries, config, config.kubeconfig, stages, ports["kwok"]))
    podnet.ensure_bridge(config)
    hf_home = cache_root() / "hf-home"
    if seed_hub_cache(hf_home):
        log("all-MiniLM-L6-v2 is in the offline hub cache for process-backed model pods")
    else:
        log(f"all-MiniLM-L6-v2 not in the offline hub cache: the {PACKAGE} package is not installed")
    tiny_chat = seed_tiny_chat(hf_home)
    if tiny_chat:
        log(f"{tiny_chat} is in the offline hub cache for process-backed model pods")
    tiny = seed_tiny_models(hf_home)
    if tiny:
        log(f"{len(tiny)} tiny models (modelcluster/tiny-<task>, one per task) are in the offline hub cache")
    processes.start(
        run_dir,
        "podrunner",
        [sys.executable, "-m", "modelcluster.devcluster.podrunner", "--state-dir", str(state_dir)],
        env=dict(os.environ, MODELCLUSTER_CACHE=str(cache_root())),
    )
    _create_nodes(config)
    _all_running(run_dir)
    log(f"cluster {config.name!r} started in {time.monotonic() - started:.1f}s")


def down(config: ClusterConfig) -> None:
    """Stop every process the cluster started, remove its pod network, keep the binaries."""
    started = time.monotonic()
    run_dir = config.state_dir / "run"
    stopped = [name for name in COMPONENTS if processes.stop(run_dir, name)]
    podnet.remove_all(config)
    if netguard.installed(config):
        log(egress_summary(config))
    netguard.remove(config)
    _state_path(config).unlink(missing_ok=True)
    shutil.rmtree(config.state_dir / "etcd-data", ignore_errors=True)
    log(
        f"cluster {config.name!r} stopped ({', '.join(stopped) or 'nothing was running'}) "
        f"in {time.monotonic() - started:.1f}s"
    )
