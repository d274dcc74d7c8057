"""Pure parts of the local control plane: build inputs, nodes, stages, pod status, probes."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import pytest

from modelcluster.devcluster.binaries import staging_replaces, version_ldflags
from modelcluster.devcluster.config import ClusterConfig
from modelcluster.devcluster.nodes import GPU_RESOURCE, node_pool
from modelcluster.devcluster.pki import generate, serving_covers
from modelcluster.devcluster.podrunner import MissingSecret, container_env, termination_grace
from modelcluster.devcluster.podstatus import ContainerView, pod_status
from modelcluster.devcluster.probes import ProbeSpec, ProbeState, resolve_port
from modelcluster.devcluster.stages import IMAGE_QUERY, exclude_images

KUBERNETES_GO_MOD = """
module k8s.io/kubernetes

require (
\tk8s.io/api v0.0.0
)

replace (
\tk8s.io/api => ./staging/src/k8s.io/api
\tk8s.io/client-go => ./staging/src/k8s.io/client-go
\tk8s.io/api => ./staging/src/k8s.io/api
)
"""


def test_staging_replaces_pin_every_staging_module_to_its_release() -> None:
    assert staging_replaces(KUBERNETES_GO_MOD, "v1.34.4") == [
        "\tk8s.io/api => k8s.io/api v0.34.4",
        "\tk8s.io/client-go => k8s.io/client-go v0.34.4",
    ]


def test_staging_replaces_refuse_a_go_mod_without_staging() -> None:
    with pytest.raises(ValueError, match="no staging modules"):
        staging_replaces("module example.com/x\n", "v1.34.4")


def test_version_ldflags_stamp_semver_into_both_version_packages() -> None:
    flags = version_ldflags("v1.34.4", "2026-01-01T00:00:00Z")
    for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        assert f"-X {package}.gitVersion=v1.34.4" in flags
        assert f"-X {package}.gitMajor=1" in flags
        assert f"-X {package}.gitMinor=34" in flags


def test_node_pool_has_tainted_gpu_nodes_and_plain_cpu_nodes() -> None:
    nodes = node_pool(gpu_nodes=4, gpus_per_node=8, cpu_nodes=1)
    gpu = [n for n in nodes if GPU_RESOURCE in n["status"]["capacity"]]
    cpu = [n for n in nodes if GPU_RESOURCE not in n["status"]["capacity"]]
    assert len(gpu) == 4
    assert len(cpu) == 1
    for node in gpu:
        assert node["status"]["allocatable"][GPU_RESOURCE] == "8"
        assert node["metadata"]["labels"]["nvidia.com/gpu.present"] == "true"
        assert node["spec"]["taints"] == [{"key": GPU_RESOURCE, "value": "present", "effect": "NoSchedule"}]
    assert cpu[0]["spec"]["taints"] == []
    assert len({n["metadata"]["name"] for n in nodes}) == 5


POD_STAGE: dict[str, Any] = {
    "kind": "Stage",
    "spec": {
        "resourceRef": {"apiGroup": "v1", "kind": "Pod"},
        "selector": {"matchExpressions": [{"key": ".metadata.deletionTimestamp", "operator": "DoesNotExist"}]},
    },
}


def test_exclude_images_adds_a_notin_expression_without_touching_the_original() -> None:
    result = exclude_images(POD_STAGE, ["b:1", "a:1"])
    assert result["spec"]["selector"]["matchExpressions"][-1] == {
        "key": IMAGE_QUERY,
        "operator": "NotIn",
        "values": ["a:1", "b:1"],
    }
    assert len(POD_STAGE["spec"]["selector"]["matchExpressions"]) == 1


def test_exclude_images_leaves_node_stages_and_empty_mappings_alone() -> None:
    node_stage = {"spec": {"resourceRef": {"kind": "Node"}}}
    assert exclude_images(node_stage, ["a:1"]) is node_stage
    assert exclude_images(POD_STAGE, []) is POD_STAGE


def test_process_pod_network_differs_per_cluster_and_avoids_simulated_range() -> None:
    dev, test = ClusterConfig(name="dev"), ClusterConfig(name="test")
    assert dev.process_pod_network != test.process_pod_network
    simulated = ipaddress.ip_network(dev.simulated_pod_cidr)
    assert not dev.process_pod_network.overlaps(simulated)
    assert len(dev.bridge) <= 15


def _view(**changes: Any) -> ContainerView:
    base: dict[str, Any] = {
        "name": "main",
        "image": "img:1",
        "running": True,
        "ready": True,
        "restart_count": 0,
        "started_at": "2026-01-01T00:00:00Z",
    }
    return ContainerView(**{**base, **changes})


def _conditions(status: dict[str, Any]) -> dict[str, str]:
    return {c["type"]: c["status"] for c in status["conditions"]}


def test_pod_status_reports_ready_running_container_with_address() -> None:
    status = pod_status(_view(), [], "10.250.1.2", "10.250.1.1", "t0", "t1")
    assert status["phase"] == "Running"
    assert status["podIP"] == "10.250.1.2"
    assert _conditions(status) == {
        "PodScheduled": "True",
        "Initialized": "True",
        "ContainersReady": "True",
        "Ready": "True",
    }
    assert status["containerStatuses"][0]["state"] == {"running": {"startedAt": "2026-01-01T00:00:00Z"}}


def test_pod_status_after_a_crash_is_not_ready_and_counts_the_restart() -> None:
    view = _view(running=False, ready=False, restart_count=1, waiting_reason="CrashLoopBackOff", last_exit_code=137)
    status = pod_status(view, [{"name": "side", "image": "s:1"}], "10.250.1.2", "10.250.1.1", "t0", "t1")
    assert _conditions(status)["Ready"] == "False"
    main = status["containerStatuses"][0]
    assert main["state"] == {"waiting": {"reason": "CrashLoopBackOff"}}
    assert main["lastState"]["terminated"]["exitCode"] == 137
    assert main["restartCount"] == 1
    assert status["containerStatuses"][1]["ready"] is True


def test_pod_status_keeps_transition_time_of_unchanged_conditions() -> None:
    first = pod_status(_view(), [], "ip", "host", "t0", "t1")
    second = pod_status(_view(ready=False), [], "ip", "host", "t0", "t2", previous=first)
    times = {c["type"]: c["lastTransitionTime"] for c in second["conditions"]}
    assert times["PodScheduled"] == "t1"
    assert times["Ready"] == "t2"


def test_probe_spec_defaults_and_named_ports() -> None:
    container = {"ports": [{"name": "http", "containerPort": 8000}]}
    spec = ProbeSpec.parse({"httpGet": {"path": "/health", "port": "http"}}, container)
    assert spec is not None
    assert (spec.port, spec.http_path, spec.period, spec.failure_threshold) == (8000, "/health", 10.0, 3)
    assert ProbeSpec.parse(None, container) is None
    assert resolve_port("missing", container) is None
    assert resolve_port(9000, container) == 9000


def test_probe_state_needs_thresholds_to_flip() -> None:
    state = ProbeState(spec=ProbeSpec(port=1, success_threshold=2, failure_threshold=2, period=1.0), next_at=0.0)
    assert state.record(True, "ok", 0.0) is False
    assert state.record(True, "ok", 1.0) is True
    assert state.passing
    assert state.record(False, "down", 2.0) is False
    assert state.passing
    assert state.record(False, "down", 3.0) is True
    assert not state.passing
    assert state.failed_out
    assert state.next_at == 4.0


@pytest.mark.parametrize(
    ("metadata", "spec", "grace"),
    [
        ({}, {"terminationGracePeriodSeconds": 330}, 330.0),  # honoured whole, however long
        ({"deletionGracePeriodSeconds": 5}, {"terminationGracePeriodSeconds": 330}, 5.0),  # delete --grace-period
        ({"deletionGracePeriodSeconds": 0}, {"terminationGracePeriodSeconds": 330}, 0.0),
        ({}, {}, 30.0),  # the API's default
    ],
)
def test_termination_grace_is_the_deletions_else_the_pods(
    metadata: dict[str, Any], spec: dict[str, Any], grace: float
) -> None:
    assert termination_grace({"metadata": metadata, "spec": spec}) == grace


def test_container_env_resolves_literals_and_downward_api_fields() -> None:
    pod = {"metadata": {"name": "p", "namespace": "ns", "uid": "u"}, "spec": {"nodeName": "gpu-node-0"}}
    container = {
        "env": [
            {"name": "A", "value": "1"},
            {"name": "NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        ]
    }
    assert container_env(container, pod, "10.0.0.9") == {"A": "1", "NAME": "p", "IP": "10.0.0.9"}


def test_container_env_reads_secret_keys_of_the_pods_namespace_as_a_kubelet() -> None:
    pod = {"metadata": {"name": "p", "namespace": "ns", "uid": "u"}, "spec": {}}
    secrets = {("ns", "s", "k"): "v"}
    asked: list[tuple[str, str, str]] = []

    def lookup(namespace: str, name: str, key: str) -> str | None:
        asked.append((namespace, name, key))
        return secrets.get((namespace, name, key))

    container = {
        "env": [
            {"name": "SECRET", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
            {"name": "MAYBE", "valueFrom": {"secretKeyRef": {"name": "gone", "key": "k", "optional": True}}},
        ]
    }
    assert container_env(container, pod, "10.0.0.9", lookup) == {"SECRET": "v"}
    assert asked == [("ns", "s", "k"), ("ns", "gone", "k")]
    # A required key that is missing: the container does not start (CreateContainerConfigError).
    missing = {"env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "gone", "key": "k"}}}]}
    with pytest.raises(MissingSecret, match="'gone'"):
        container_env(missing, pod, "10.0.0.9", lookup)


def test_an_existing_pki_gets_a_serving_cert_for_a_new_address(tmp_path: Path) -> None:
    pki = generate(tmp_path / "pki", "10.96.0.1")
    ca = pki.ca_cert.read_bytes()
    assert not serving_covers(pki, ("10.250.7.1",))
    generate(tmp_path / "pki", "10.96.0.1", ("10.250.7.1",))
    assert serving_covers(pki, ("127.0.0.1", "10.96.0.1", "10.250.7.1"))
    assert pki.ca_cert.read_bytes() == ca, "the CA (and every kubeconfig made from it) stays"
