"""Two operators, one Lease: a paused leader is replaced within the lease, and writes nothing when it resumes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from kubernetes import client as k8s
from kubernetes import watch

from modelcluster.api.naming import object_name
from modelcluster.devcluster.controlplane import free_port
from modelcluster.operator.run import EXIT_LEADERSHIP_LOST

from support import Cluster, OperatorProcess, eventually, modelcluster_body, or_none, signed_env

pytestmark = pytest.mark.cluster

GROUP, VERSION, PLURAL = "modelcluster.dev", "v1alpha1", "modelclusters"
LEASE_SECONDS = 15
MODEL = "test-org/leader-election-model"
# Each operator gets a catalog of its own, in which the model's tier asks for a different amount of memory:
# the Deployment's memory request then tells which operator applied it last.
MEMORY = {"leader-a": "3Gi", "leader-b": "5Gi"}


class Standby(OperatorProcess):
    """An operator that is up when it answers ``/healthz``: a standby's ``/readyz`` stays 503 until it leads."""

    def _ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"the operator exited with {self.process.returncode}")
        try:
            return httpx.get(f"http://127.0.0.1:{self.health_port}/healthz", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    def leads(self) -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{self.health_port}/readyz", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False


def catalog(directory: Path, identity: str) -> Path:
    path = directory / f"catalog-{identity}.yaml"
    tier = {"name": "leader-test", "gpuMemoryGB": 16, "gpus": 1, "cpu": "1", "memory": MEMORY[identity], "cache": "1Gi"}
    model = {"id": MODEL, "task": "text-generation", "tier": "leader-test"}
    path.write_text(yaml.safe_dump({"tiers": [tier], "models": [model]}))
    return path


def memory_of(deployment: dict[str, Any] | k8s.V1Deployment | None) -> str | None:
    if deployment is None:
        return None
    if isinstance(deployment, k8s.V1Deployment):
        requests = deployment.spec.template.spec.containers[0].resources.requests or {}
        return str(requests.get("memory"))
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return str(((container.get("resources") or {}).get("requests") or {}).get("memory"))


def events_since(list_call: Any, version: str, **kwargs: Any) -> list[dict[str, Any]]:
    """Every change after ``version`` (the apiserver replays them to a watch started from it)."""
    stream = watch.Watch().stream(list_call, resource_version=version, timeout_seconds=2, **kwargs)
    return [event["raw_object"] for event in stream]


def test_a_paused_leader_is_replaced_within_the_lease_and_writes_nothing_when_resumed(
    cluster: Cluster, namespace: str, operator_aside: None, tmp_path: Path
) -> None:
    lease_name = f"leader-test-{uuid.uuid4().hex[:8]}"
    leases = k8s.CoordinationV1Api(cluster.api_client)
    objects = k8s.CustomObjectsApi(cluster.api_client)
    lease_namespace = OperatorProcess.LEASE_NAMESPACE

    def operator_for(identity: str) -> Standby:
        args = [f"--catalog={catalog(tmp_path, identity)}", f"--lease-name={lease_name}", f"--identity={identity}"]
        (tmp_path / identity).mkdir()
        return Standby(cluster, tmp_path / identity, args)

    def holder() -> str | None:
        lease = leases.read_namespaced_lease(lease_name, lease_namespace)
        return lease.spec.holder_identity

    first, second = operator_for("leader-a"), operator_for("leader-b")
    try:
        first.start()
        eventually(first.leads, timeout=30, what="the first operator to lead")
        second.start()
        assert holder() == "leader-a" and not second.leads()

        name = object_name(MODEL)
        body = modelcluster_body(MODEL, capacity={"min": 0, "desired": 0, "max": 1}, timeout=300)
        objects.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)

        def deployment_memory() -> str | None:
            return memory_of(or_none(lambda: cluster.apps.read_namespaced_deployment(name, namespace)))

        eventually(lambda: deployment_memory() == MEMORY["leader-a"], what="the leader's Deployment")

        assert first.process is not None
        os.kill(first.process.pid, signal.SIGSTOP)
        paused = time.monotonic()
        try:
            eventually(lambda: holder() == "leader-b", timeout=LEASE_SECONDS + 15, interval=0.1, what="a takeover")
            took_over = time.monotonic() - paused
            # Not before the paused leader's last renewal can have expired, and within the lease (+ polling).
            assert 11 <= took_over <= LEASE_SECONDS + 8, took_over
            eventually(second.leads, timeout=10, what="the new leader to report ready")
            eventually(lambda: deployment_memory() == MEMORY["leader-b"], what="the new leader's Deployment")

            # Work the paused leader will find queued when it resumes: a changed spec.
            objects.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name, {"spec": {"timeout": 600}})

            def handled() -> bool:
                found = objects.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
                return bool((found.get("status") or {}).get("observedGeneration") == found["metadata"]["generation"])

            eventually(handled, what="the new leader to handle the change")
            deployments_version = cluster.apps.list_namespaced_deployment(namespace).metadata.resource_version
            leases_version = leases.list_namespaced_lease(lease_namespace).metadata.resource_version
        finally:
            os.kill(first.process.pid, signal.SIGCONT)

        exit_code = first.process.wait(timeout=15)
        assert exit_code == EXIT_LEADERSHIP_LOST
        log = (tmp_path / "leader-a" / "operator-1.log").read_text()
        assert "lost leadership" in log

        # Everything that changed after the resume: nothing carries the old leader's memory or identity.
        deployments = events_since(cluster.apps.list_namespaced_deployment, deployments_version, namespace=namespace)
        assert all(memory_of(item) != MEMORY["leader-a"] for item in deployments), deployments
        renewals = events_since(leases.list_namespaced_lease, leases_version, namespace=lease_namespace)
        mine = [item for item in renewals if item["metadata"]["name"] == lease_name]
        assert all(item["spec"]["holderIdentity"] == "leader-b" for item in mine), mine
        assert holder() == "leader-b"
        assert deployment_memory() == MEMORY["leader-b"]
    finally:
        first.stop()
        second.stop()


def test_a_missing_lease_namespace_ends_the_operator_with_a_clear_message(cluster: Cluster) -> None:
    missing = f"no-such-namespace-{uuid.uuid4().hex[:8]}"
    argv = [
        str(Path(sys.executable).with_name("modelcluster")),
        "operator",
        f"--lease-namespace={missing}",
        f"--metrics-port={free_port()}",
        f"--health-port={free_port()}",
    ]
    env = signed_env(cluster)
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert f"kubectl create namespace {missing}" in done.stderr, done.stderr
    # The answer names the fix, not the API's raw 404 (the host name may hold any digits).
    for raw in ("(404)", "Reason: Not Found", "HTTP response", "Traceback"):
        assert raw not in done.stderr, done.stderr
