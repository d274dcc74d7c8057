"""Shared fixtures: a Kubernetes control plane and a fresh namespace per test.

With ``KUBECONFIG`` set, tests run against that cluster (kind on a laptop, say);
otherwise the local control plane named ``test`` is started for the session (and
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
from kubernetes.client.exceptions import ApiException

from modelcluster.devcluster import controlplane
from modelcluster.devcluster.config import ClusterConfig, load_pod_commands
from modelcluster.devcluster.tools import ensure_tools

from support import TEST_CATALOG, Cluster, OperatorProcess

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    external = os.environ.get("KUBECONFIG")
    if external:
        path = Path(external)
        yield Cluster(path, k8s_config.new_client_from_config(config_file=str(path)), None)
        return
    ensure_tools()
    config = ClusterConfig(name="test", pod_commands=load_pod_commands(REPO / "e2e" / "pod-commands.yaml"))
    was_running = controlplane.running(config)
    kubeconfig = controlplane.up(config)
    try:
        yield Cluster(kubeconfig, k8s_config.new_client_from_config(config_file=str(kubeconfig)), config)
    finally:
        if not was_running:
            controlplane.down(config)


@pytest.fixture
def namespace(cluster: Cluster) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:10]}"
    cluster.core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name)))
    try:
        yield name
    finally:
        try:
            cluster.core.delete_namespace(name)
        except ApiException as error:
            if error.status != 404:
                raise


@pytest.fixture(scope="session")
def kubectl(cluster: Cluster) -> Iterator[list[str]]:
    yield [str(ensure_tools().kubectl), f"--kubeconfig={cluster.kubeconfig}"]


@pytest.fixture(scope="session")
def operator(
    cluster: Cluster, kubectl: list[str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    subprocess.run([*kubectl, "apply", "--server-side", "-f", str(REPO / "crds" / "modelclusters.yaml")], check=True)
    subprocess.run([*kubectl, "wait", "--for=condition=Established", "crd/modelclusters.modelcluster.dev"], check=True)
    catalog = tmp_path_factory.mktemp("catalog") / "catalog.yaml"
    catalog.write_text(yaml.safe_dump(TEST_CATALOG))
    process = OperatorProcess(cluster, tmp_path_factory.mktemp("operator"), ["--catalog", str(catalog)])
    process.start()
    try:
        yield process
    finally:
        process.stop()
