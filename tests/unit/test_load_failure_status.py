"""Load failures end the runtime with the cause, the local kubelet reports it, the status shows it at once."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from modelcluster.api import ClusterPhase
from modelcluster.api.exit_codes import MODEL_LOAD_FAILED_EXIT_CODE
from modelcluster.api.warm_pool import CLAIMED, STATE_LABEL
from modelcluster.devcluster.nodes import GPU_24GB, GPU_80GB, node_pool
from modelcluster.devcluster.podstatus import ContainerView, exit_code_of, pod_status, termination_message
from modelcluster.operator.builders.status import MODEL_LOAD_FAILED, Observation, derive_status
from modelcluster.runtime.loading import multi_gpu_kwargs
from modelcluster.runtime.termination import MAX_MESSAGE_BYTES, write_termination_message

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
CAUSE = "OSError: acme/gated is a gated repository: set HF_TOKEN"


def deployment() -> dict[str, Any]:
    return {
        "metadata": {"name": "m", "creationTimestamp": "2026-01-01T11:59:00Z"},
        "spec": {"replicas": 1},
        "status": {"replicas": 1, "readyReplicas": 0},
    }


def runtime_container(state: dict[str, Any], exit_code: int, message: str | None = CAUSE) -> dict[str, Any]:
    terminated: dict[str, Any] = {"exitCode": exit_code, "reason": "Error", "finishedAt": "2026-01-01T11:59:50Z"}
    if message is not None:
        terminated["message"] = message
    return {
        "name": "runtime",
        "image": "img:1",
        "ready": False,
        "restartCount": 1,
        "state": state,
        "lastState": {"terminated": terminated},
    }


def derive(container: dict[str, Any]) -> Any:
    pod = {"metadata": {"name": "m-1"}, "status": {"phase": "Running", "containerStatuses": [container]}}
    observation = Observation(generation=2, now=NOW, deployment=deployment(), pods=[pod], target_replicas=1)
    return derive_status(observation, unschedulable_deadline=NOW - NOW).status


@pytest.mark.parametrize(
    "state",
    [{"running": {"startedAt": "2026-01-01T11:59:51Z"}}, {"waiting": {"reason": "CrashLoopBackOff"}}],
    ids=["restarted-at-once", "backing-off"],
)
def test_first_load_failure_is_reported_with_the_runtimes_message(state: dict[str, Any]) -> None:
    status = derive(runtime_container(state, MODEL_LOAD_FAILED_EXIT_CODE))
    assert status.status is ClusterPhase.FAILED
    assert status.reason == MODEL_LOAD_FAILED
    assert status.message is not None and CAUSE in status.message
    degraded = next(c for c in status.conditions if c.type == "Degraded")
    assert degraded.reason == MODEL_LOAD_FAILED


def test_load_failure_without_a_message_names_the_exit_code() -> None:
    status = derive(runtime_container({"running": {}}, MODEL_LOAD_FAILED_EXIT_CODE, message=None))
    assert status.reason == MODEL_LOAD_FAILED
    assert status.message is not None and f"exit code {MODEL_LOAD_FAILED_EXIT_CODE}" in status.message


def test_other_first_failure_is_reported_before_any_back_off() -> None:
    status = derive(runtime_container({"running": {}}, 137, message="Killed"))
    assert status.status is ClusterPhase.FAILED
    assert status.reason == "Error"
    assert status.message is not None and "code 137" in status.message and "Killed" in status.message


def test_a_crash_loop_of_other_exits_keeps_its_reason() -> None:
    status = derive(runtime_container({"waiting": {"reason": "CrashLoopBackOff"}}, 1))
    assert status.reason == "CrashLoopBackOff"


def test_a_ready_container_with_an_old_failure_is_running() -> None:
    container = {**runtime_container({"running": {}}, MODEL_LOAD_FAILED_EXIT_CODE), "ready": True}
    pod = {"metadata": {"name": "m-1"}, "status": {"containerStatuses": [container]}}
    ready = {**deployment(), "status": {"replicas": 1, "updatedReplicas": 1, "readyReplicas": 1}}
    observation = Observation(generation=2, now=NOW, deployment=ready, pods=[pod], target_replicas=1)
    assert derive_status(observation, NOW - NOW).status.status is ClusterPhase.RUNNING


# --- the local kubelet's termination messages -----------------------------------------------------


def test_termination_message_prefers_the_file() -> None:
    assert termination_message(b"cause\n", b"log line\n", 4, "FallbackToLogsOnError") == "cause"


def test_termination_message_falls_back_to_the_log_end_on_error_only() -> None:
    log = b"".join(f"line {i}\n".encode() for i in range(200))
    message = termination_message(b"", log, 1, "FallbackToLogsOnError")
    assert message is not None
    assert message.endswith("line 199")
    assert len(message.splitlines()) == 80
    assert termination_message(b"", log, 0, "FallbackToLogsOnError") is None
    assert termination_message(b"", log, 1, "File") is None
    assert len(termination_message(b"", b"x" * 5000, 1, "FallbackToLogsOnError") or "") == 2048


def test_exit_code_of_a_killed_process_is_128_plus_the_signal() -> None:
    assert exit_code_of(4) == 4
    assert exit_code_of(-9) == 137


def test_pod_status_carries_the_last_termination_message() -> None:
    view = ContainerView(
        name="runtime",
        image="img:1",
        running=False,
        ready=False,
        restart_count=1,
        started_at="t1",
        waiting_reason="CrashLoopBackOff",
        last_exit_code=MODEL_LOAD_FAILED_EXIT_CODE,
        last_finished_at="t2",
        last_started_at="t1",
        last_message=CAUSE,
    )
    terminated = pod_status(view, [], "10.0.0.2", "10.0.0.1", "t0", "t3")["containerStatuses"][0]["lastState"]
    assert terminated["terminated"] == {
        "exitCode": MODEL_LOAD_FAILED_EXIT_CODE,
        "reason": "Error",
        "startedAt": "t1",
        "finishedAt": "t2",
        "message": CAUSE,
    }


# --- the runtime's side ---------------------------------------------------------------------------


def test_runtime_writes_the_cause_only_where_the_file_exists(tmp_path: Path) -> None:
    missing = tmp_path / "absent"
    assert write_termination_message(missing, CAUSE) is False
    assert not missing.exists()
    present = tmp_path / "termination-log"
    present.touch()
    assert write_termination_message(present, CAUSE) is True
    assert present.read_text() == CAUSE
    write_termination_message(present, "é" * 5000)
    assert len(present.read_bytes()) <= MAX_MESSAGE_BYTES


@pytest.mark.parametrize(
    ("task", "device", "gpus", "vllm", "given", "expected"),
    [
        ("chat", "cuda", 1, False, {}, {}),
        ("chat", "cpu", 4, False, {}, {}),
        ("chat", "cuda", 4, True, {}, {"tensor_parallel_size": 4}),
        ("chat", "cuda", 4, True, {"tensor_parallel_size": 2}, {}),
        ("chat", "cuda", 2, False, {}, {"device_map": "auto"}),
        ("image-text-to-text", "cuda", 8, False, {}, {"device_map": "auto"}),
        ("chat", "cuda", 2, False, {"device_map": "balanced"}, {}),
        ("text-classification", "cuda", 2, False, {}, {}),
    ],
)
def test_multi_gpu_kwargs(
    task: str, device: str, gpus: int, vllm: bool, given: dict[str, Any], expected: dict[str, Any]
) -> None:
    assert multi_gpu_kwargs(task, device, gpus, vllm, given) == expected


# --- the local cluster's GPU nodes ----------------------------------------------------------------


def test_local_gpu_nodes_come_in_two_sizes_labelled_as_feature_discovery_does() -> None:
    nodes = node_pool(gpu_nodes=2, gpus_per_node=8, cpu_nodes=1, small_gpu_nodes=1)
    by_memory: dict[str, list[str]] = {}
    for node in nodes:
        labels = node["metadata"]["labels"]
        if "nvidia.com/gpu.memory" in labels:
            by_memory.setdefault(labels["nvidia.com/gpu.memory"], []).append(node["metadata"]["name"])
    assert by_memory == {
        str(GPU_80GB.memory_mib): ["gpu-node-0", "gpu-node-1"],
        str(GPU_24GB.memory_mib): ["gpu-24gb-node-0"],
    }
    small = next(n for n in nodes if n["metadata"]["name"] == "gpu-24gb-node-0")
    assert small["metadata"]["labels"]["nvidia.com/gpu.product"] == "NVIDIA-L4"
    assert small["spec"]["taints"] == [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]


def test_a_borrowed_standby_that_failed_to_load_does_not_fail_its_cluster() -> None:
    container = runtime_container({"running": {"startedAt": "2026-01-01T11:59:51Z"}}, MODEL_LOAD_FAILED_EXIT_CODE)
    borrowed = {"metadata": {"name": "standby-1", "labels": {STATE_LABEL: CLAIMED}},
                "status": {"phase": "Running", "containerStatuses": [container]}}  # fmt: skip
    observation = Observation(generation=2, now=NOW, deployment=deployment(), pods=[borrowed], target_replicas=1)
    status = derive_status(observation, unschedulable_deadline=NOW - NOW).status
    assert status.status is ClusterPhase.DEPLOYING  # its own pod is still to come
