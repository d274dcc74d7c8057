"""Helpers for tests and benchmarks: the cluster under test and its processes, a fake of the Kubernetes layer
(:mod:`support.fake_kube`), polling with a deadline (:mod:`support.polling`) and ModelCluster bodies."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import httpx
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from modelcluster.api import GROUP, PLURAL, VERSION
from modelcluster.api.pod_auth import CredentialIssuer
from modelcluster.devcluster import system
from modelcluster.devcluster.config import ClusterConfig
from modelcluster.devcluster.controlplane import free_port as free_port
from modelcluster.devcluster.system import modelcluster_body as modelcluster_body

from support.fake_kube import FakeKube as FakeKube
from support.polling import eventually as eventually
from support.polling import eventually_async as eventually_async

T = TypeVar("T")


def or_none(read: Callable[[], T]) -> T | None:
    """``read()``, or None when the object it reads does not exist (404)."""
    try:
        return read()
    except ApiException as error:
        if error.status == 404:
            return None
        raise


def drop_tenant(core: k8s.CoreV1Api, name: str) -> None:
    """Delete the Tenant ``name`` (``keys create`` makes one per tenant namespace); none (404) is fine."""
    try:
        k8s.CustomObjectsApi(core.api_client).delete_cluster_custom_object(
            "modelcluster.dev", "v1alpha1", "tenants", name
        )
    except ApiException as error:
        if error.status != 404:
            raise


def drop_namespace(core: k8s.CoreV1Api, name: str) -> None:
    """Delete namespace ``name`` and the Tenant of that name first (else the operator makes it again); one
    already gone (404) is fine."""
    drop_tenant(core, name)
    try:
        core.delete_namespace(name)
    except ApiException as error:
        if error.status != 404:
            raise


def serving(process: subprocess.Popen[bytes] | None, what: str, ready_url: str) -> bool:
    """Whether a component process answers its readiness URL with 200 (failing if it has exited)."""
    if process is None or process.poll() is not None:
        raise AssertionError(f"the {what} exited with {process and process.returncode}")
    try:
        return httpx.get(ready_url, timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def terminate(process: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM, then SIGKILL after 15 s."""
    if process is not None and process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass(frozen=True)
class Cluster:
    """The cluster under test: its kubeconfig, an API client and, when local, its config."""

    kubeconfig: Path
    api_client: k8s.ApiClient
    local: ClusterConfig | None

    @property
    def core(self) -> k8s.CoreV1Api:
        return k8s.CoreV1Api(self.api_client)

    @property
    def apps(self) -> k8s.AppsV1Api:
        return k8s.AppsV1Api(self.api_client)


# A catalog entry for the operator under test: a model needing more GPUs than any node has.
GIANT_MODEL = "test-org/giant-model"
REJECTED_MODEL = "test-org/rejected-model"
TEST_CATALOG = {
    "tiers": [
        {"name": "giant", "gpuMemoryGB": 1280, "gpus": 16, "cpu": "64", "memory": "512Gi", "cache": "64Gi"},
        # The apiserver refuses a negative CPU request (422): a child object it rejects (never chosen by size).
        {"name": "broken", "gpuMemoryGB": 9999, "gpus": 0, "cpu": "-1", "memory": "1Gi", "cache": "1Gi"},
    ],
    "models": [
        {"id": GIANT_MODEL, "task": "text-generation", "params": 1_000_000_000, "tier": "giant"},
        {"id": REJECTED_MODEL, "task": "text-classification", "params": 1_000_000, "tier": "broken"},
    ],
}


def pod_auth_key(cluster: Cluster) -> str:
    """The signing key of the pod credentials for the cluster under test: the local cluster's own (kept in its
    state directory, as ``modelcluster dev`` keeps it), else one kept beside the given kubeconfig's name in the
    temporary directory."""
    if cluster.local is not None:
        return system.pod_auth_key(cluster.local.state_dir / "pod-auth-key")
    digest = hashlib.sha256(str(cluster.kubeconfig.resolve()).encode()).hexdigest()[:16]
    return system.pod_auth_key(Path(tempfile.gettempdir()) / f"modelcluster-pod-auth-{digest}")


def signed_env(cluster: Cluster) -> dict[str, str]:
    """The environment of an operator or a gateway under test: the cluster's kubeconfig and the signing key."""
    return dict(os.environ, KUBECONFIG=str(cluster.kubeconfig), **system.pod_auth_env(pod_auth_key(cluster)))


def pod_credential(cluster: Cluster, namespace: str, name: str) -> dict[str, str]:
    """The header presenting the pod credential of ModelCluster ``namespace``/``name``, as the gateway sends it."""
    body = k8s.CustomObjectsApi(cluster.api_client).get_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name
    )
    return CredentialIssuer(pod_auth_key(cluster)).headers(namespace, name, str(body["metadata"]["uid"]))


class OperatorProcess:
    """``modelcluster operator`` as a real process against the cluster under test."""

    UNSCHEDULABLE_DEADLINE = 10
    LEASE_NAMESPACE = system.SYSTEM_NAMESPACE

    def __init__(self, cluster: Cluster, workdir: Path, extra_args: list[str]) -> None:
        self.cluster = cluster
        self.workdir = workdir
        self.extra_args = extra_args
        self.process: subprocess.Popen[bytes] | None = None
        self.health_port = free_port()
        self.metrics_port = free_port()
        self.starts = 0

    def start(self) -> None:
        try:
            self.cluster.core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=self.LEASE_NAMESPACE)))
        except ApiException as error:
            if error.status != 409:
                raise
        argv = system.operator_argv(
            system.executable(),
            metrics_port=self.metrics_port,
            health_port=self.health_port,
            lease_namespace=self.LEASE_NAMESPACE,
            extra=[f"--unschedulable-deadline={self.UNSCHEDULABLE_DEADLINE}", *self.extra_args],
        )
        env = signed_env(self.cluster)
        self.starts += 1
        log = (self.workdir / f"operator-{self.starts}.log").open("wb")
        self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            eventually(self._ready, timeout=90, what=f"the operator to become ready (log: {log.name})")
        except AssertionError:
            terminate(self.process)  # never left running (holding the lease) behind a failed start
            raise

    def _ready(self) -> bool:
        return serving(self.process, "operator", f"http://127.0.0.1:{self.health_port}/readyz")

    def metrics(self) -> str:
        return httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5.0).text

    def kill(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        terminate(self.process)


class GatewayProcess:
    """``modelcluster gateway`` as a real process on a free port, against the cluster under test."""

    KEY_NAMESPACE = system.SYSTEM_NAMESPACE

    def __init__(
        self,
        cluster: Cluster,
        workdir: Path,
        extra_args: list[str],
        port: int | None = None,
        metrics_port: int | None = None,
        extra_env: dict[str, str] | None = None,
        ready_timeout: float = 60,
    ) -> None:
        self.cluster = cluster
        self.workdir = workdir
        self.extra_args = extra_args
        self.extra_env = dict(extra_env or {})
        self.ready_timeout = ready_timeout
        self.port = port or free_port()
        self.metrics_port = metrics_port or free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / "gateway.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def metrics_url(self) -> str:
        """``/metrics``, on the gateway's metrics port (the API port answers 404 there)."""
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def start(self) -> None:
        argv = system.gateway_argv(
            system.executable(),
            port=self.port,
            metrics_port=self.metrics_port,
            host="127.0.0.1",
            key_namespace=self.KEY_NAMESPACE,
            extra=self.extra_args,
        )
        env = {**signed_env(self.cluster), **self.extra_env}
        # Each gateway under test keeps its own usage ledger, in its working directory.
        env.setdefault("MODELCLUSTER_GATEWAY_LEDGER_URL", f"sqlite+aiosqlite:///{self.workdir / 'usage.sqlite'}")
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            eventually(
                self._ready, timeout=self.ready_timeout, what=f"the gateway to become ready (log: {self.log_path})"
            )
        except AssertionError:
            terminate(self.process)  # never left running behind a failed start
            raise

    def _ready(self) -> bool:
        return serving(self.process, "gateway", f"{self.url}/ready")

    def metrics(self) -> str:
        return httpx.get(self.metrics_url, timeout=5.0).text

    def stop(self) -> None:
        terminate(self.process)


@dataclass(frozen=True)
class Tenant:
    """A tenant namespace with its own API key."""

    namespace: str
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Key {self.key}"}


def create_key(cluster: Cluster, tenant: str, concurrency: int = 16) -> str:
    """A new API key for ``tenant`` (its namespace is created too), from the real CLI."""
    argv = [
        str(Path(sys.executable).with_name("modelcluster")),
        "keys",
        "create",
        f"--tenant={tenant}",
        f"--concurrency={concurrency}",
        f"--namespace={GatewayProcess.KEY_NAMESPACE}",
    ]
    env = dict(os.environ, KUBECONFIG=str(cluster.kubeconfig))
    done = subprocess.run(argv, env=env, check=True, capture_output=True, text=True)
    return done.stdout.strip().splitlines()[-1]


def new_tenant(cluster: Cluster, gateway: GatewayProcess) -> Tenant:
    """A fresh tenant namespace and key, once the gateway serves the key (within a second or two)."""
    name = f"tenant-{uuid.uuid4().hex[:8]}"
    made = Tenant(name, create_key(cluster, name))

    def known() -> bool:
        return httpx.get(f"{gateway.url}/models/v2/list/tasks", headers=made.headers, timeout=5).status_code == 200

    eventually(known, timeout=30, what=f"the gateway to learn the key of {name}")
    return made
