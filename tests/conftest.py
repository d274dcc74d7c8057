"""Shared fixtures: a Kubernetes control plane and a fresh namespace per test.

With ``KUBECONFIG`` set, tests run against that cluster (kind on a laptop, say);
otherwise the local control plane named ``test`` (or ``$MODELCLUSTER_TEST_CLUSTER``) is started for the session (and
stopped afterwards unless it was already running).
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from modelcluster.devcluster import controlplane, netguard, system
from modelcluster.devcluster.config import ClusterConfig, load_pod_commands
from modelcluster.devcluster.controlplane import free_port
from modelcluster.devcluster.tools import ensure_tools

from support import (
    TEST_CATALOG,
    Cluster,
    GatewayProcess,
    OperatorProcess,
    Tenant,
    drop_namespace,
    new_tenant,
    pod_auth_key,
)

REPO = Path(__file__).resolve().parent.parent


def _local_config() -> ClusterConfig:
    name = os.environ.get("MODELCLUSTER_TEST_CLUSTER", "test")
    # The image tier (`make test-images`): pods of the images `make images` built run those images with runc.
    run_images = os.environ.get("MODELCLUSTER_TEST_IMAGES") == "1"
    return ClusterConfig(
        name=name, pod_commands=load_pod_commands(REPO / "e2e" / "pod-commands.yaml"), run_images=run_images
    )


def _egress_failure(found: netguard.Report, during: list[str] | None = None) -> str:
    shown = ", ".join(str(refusal) for refusal in found.destinations) or "(no tcp/udp destination recorded)"
    where = f"; first counted after: {', '.join(during)}" if during else ""
    return f"the egress guard refused {found.packets} packets off this machine during the session, to {shown}{where}"


class EgressLedger:
    """The guard's count after each test, so that a refusal is reported with the tests it came during."""

    def __init__(self, config: ClusterConfig | None) -> None:
        self.config = config
        self.packets = 0
        self.during: list[str] = []

    def after(self, test: str) -> None:
        if self.config is None:
            return
        packets = netguard.report(self.config).packets
        if packets > self.packets:
            self.during.append(f"{test} (+{packets - self.packets})")
            self.packets = packets


@pytest.fixture(scope="session", autouse=True)
def egress_guard() -> Iterator[EgressLedger]:
    """The whole session runs under the local cluster's egress guard; any packet off the machine fails it."""
    if os.environ.get("KUBECONFIG"):
        yield EgressLedger(None)  # a cluster of its own (kind, say) owns its networks
        return
    config = _local_config()
    controlplane.guard(config)
    ledger = EgressLedger(config)
    yield ledger
    found = netguard.report(config)
    if not controlplane.running(config):
        netguard.remove(config)
    if not found.clean:
        pytest.fail(_egress_failure(found, ledger.during))


@pytest.fixture(autouse=True)
def egress_checked(egress_guard: EgressLedger, request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    egress_guard.after(request.node.nodeid)


@pytest.fixture(scope="session")
def cluster(egress_guard: EgressLedger) -> Iterator[Cluster]:
    external = os.environ.get("KUBECONFIG")
    if external:
        path = Path(external)
        yield Cluster(path, k8s_config.new_client_from_config(config_file=str(path)), None)
        return
    ensure_tools()
    config = _local_config()
    was_running = controlplane.running(config)
    kubeconfig = controlplane.up(config)
    try:
        yield Cluster(kubeconfig, k8s_config.new_client_from_config(config_file=str(kubeconfig)), config)
    finally:
        found = netguard.report(config)
        if not was_running:
            controlplane.down(config)
        if not found.clean:
            pytest.fail(_egress_failure(found, egress_guard.during))


@pytest.fixture
def namespace(cluster: Cluster) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:10]}"
    cluster.core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name)))
    try:
        yield name
    finally:
        drop_namespace(cluster.core, name)


@pytest.fixture(scope="session")
def kubectl(cluster: Cluster) -> Iterator[list[str]]:
    yield [str(ensure_tools().kubectl), f"--kubeconfig={cluster.kubeconfig}"]


@pytest.fixture(scope="session")
def test_catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A catalog file layered over the default one by the operator and the gateway under test."""
    catalog = tmp_path_factory.mktemp("catalog") / "catalog.yaml"
    catalog.write_text(yaml.safe_dump(TEST_CATALOG))
    return catalog


@pytest.fixture(scope="session")
def gateway_port() -> int:
    """The gateway's port, known before the operator starts so its autoscaler can read the gateway's demand."""
    return free_port()


@pytest.fixture(scope="session")
def gateway_metrics_port() -> int:
    """The gateway's metrics port, where the operator's autoscaler reads the gateway's demand."""
    return free_port()


@pytest.fixture(scope="session")
def operator(
    cluster: Cluster,
    kubectl: list[str],
    test_catalog: Path,
    gateway_metrics_port: int,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorProcess]:
    def run_kubectl(*args: str, stdin: str | None = None) -> None:
        subprocess.run([*kubectl, *args], input=stdin, text=True, check=True)

    system.install(run_kubectl, pod_auth=pod_auth_key(cluster))
    args = ["--catalog", str(test_catalog), f"--gateway-metrics-url=http://127.0.0.1:{gateway_metrics_port}/metrics"]
    process = OperatorProcess(cluster, tmp_path_factory.mktemp("operator"), args)
    process.start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def operator_aside(operator: OperatorProcess) -> Iterator[None]:
    """The session's operator stops for one test that runs operators of its own and must know who wrote what."""
    operator.stop()
    try:
        yield
    finally:
        operator.start()


@pytest.fixture(scope="session")
def gateway(
    cluster: Cluster,
    operator: OperatorProcess,
    test_catalog: Path,
    gateway_port: int,
    gateway_metrics_port: int,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[GatewayProcess]:
    """The gateway in front of the operator's clusters (held requests wait at most 120 s)."""
    args = [f"--catalog={test_catalog}", "--hold-timeout=120"]
    process = GatewayProcess(
        cluster, tmp_path_factory.mktemp("gateway"), args, port=gateway_port, metrics_port=gateway_metrics_port
    )
    process.start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def tenant(cluster: Cluster, gateway: GatewayProcess) -> Iterator[Tenant]:
    """A fresh tenant and key (the gateway sees the key within a second or two)."""
    made = new_tenant(cluster, gateway)
    try:
        yield made
    finally:
        drop_namespace(cluster.core, made.namespace)


@pytest.fixture
def other_tenant(cluster: Cluster, gateway: GatewayProcess) -> Iterator[Tenant]:
    made = new_tenant(cluster, gateway)
    try:
        yield made
    finally:
        drop_namespace(cluster.core, made.namespace)
