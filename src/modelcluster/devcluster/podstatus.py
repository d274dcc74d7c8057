"""The pod status a kubelet would report for a process-backed pod (pure functions)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ContainerView:
    """What the pod runner knows about the one process-backed container."""

    name: str
    image: str
    running: bool
    ready: bool
    restart_count: int
    started_at: str | None
    waiting_reason: str | None = None
    waiting_message: str | None = None
    last_exit_code: int | None = None
    last_finished_at: str | None = None
    last_started_at: str | None = None
    last_message: str | None = None
    #: Whether the startup probe passed (a kubelet's ``started``); None: as ``running`` (no startup probe).
    started: bool | None = None


#: A kubelet keeps at most this much of a termination message file...
MAX_MESSAGE_BYTES = 4096
#: ...and with FallbackToLogsOnError, at most this much of the log's end (or this many lines).
FALLBACK_LOG_BYTES = 2048
FALLBACK_LOG_LINES = 80


def exit_code_of(returncode: int) -> int:
    """A process's exit code as a container runtime reports it: 128 + the signal for a killed process."""
    return returncode if returncode >= 0 else 128 - returncode


def termination_message(written: bytes, output: bytes, exit_code: int, policy: str) -> str | None:
    """The message of a terminated container: what it wrote to its terminationMessagePath, else (policy
    ``FallbackToLogsOnError``, an error exit) the end of its log, as a kubelet reports it."""
    message = written[:MAX_MESSAGE_BYTES]
    if not message.strip() and policy == "FallbackToLogsOnError" and exit_code != 0:
        lines = output.splitlines(keepends=True)[-FALLBACK_LOG_LINES:]
        message = b"".join(lines)[-FALLBACK_LOG_BYTES:]
    text = message.decode(errors="replace").strip()
    return text or None


def _condition(kind: str, status: bool, now: str, reason: str | None = None) -> dict[str, Any]:
    condition: dict[str, Any] = {"type": kind, "status": "True" if status else "False", "lastTransitionTime": now}
    if reason and not status:
        condition["reason"] = reason
    return condition


def _container_status(view: ContainerView) -> dict[str, Any]:
    state: dict[str, Any]
    if view.running:
        state = {"running": {"startedAt": view.started_at}}
    else:
        waiting: dict[str, Any] = {"reason": view.waiting_reason or "ContainerCreating"}
        if view.waiting_message:
            waiting["message"] = view.waiting_message
        state = {"waiting": waiting}
    status: dict[str, Any] = {
        "name": view.name,
        "image": view.image,
        "imageID": f"local://{view.image}",
        "containerID": f"process://{view.name}-{view.restart_count}",
        "ready": view.ready,
        "started": view.running if view.started is None else view.started,
        "restartCount": view.restart_count,
        "state": state,
    }
    if view.last_exit_code is not None:
        terminated: dict[str, Any] = {
            "exitCode": view.last_exit_code,
            "reason": "Completed" if view.last_exit_code == 0 else "Error",
            "finishedAt": view.last_finished_at,
        }
        if view.last_started_at:
            terminated["startedAt"] = view.last_started_at
        if view.last_message:
            terminated["message"] = view.last_message
        status["lastState"] = {"terminated": terminated}
    return status


def pod_status(
    container: ContainerView,
    others: list[dict[str, Any]],
    pod_ip: str,
    host_ip: str,
    start_time: str,
    now: str,
    previous: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A full ``status`` for the pod; transition times are kept when a condition did not change.

    ``others`` are the pod's other containers, which are simulated as running and ready.
    """
    ready = container.ready
    not_ready_reason = "ContainersNotReady"
    conditions = [
        _condition("PodScheduled", True, now),
        _condition("Initialized", True, now),
        _condition("ContainersReady", ready, now, not_ready_reason),
        _condition("Ready", ready, now, not_ready_reason),
    ]
    old = {c.get("type"): c for c in (previous or {}).get("conditions") or []}
    for condition in conditions:
        before = old.get(condition["type"])
        if before and before.get("status") == condition["status"] and before.get("lastTransitionTime"):
            condition["lastTransitionTime"] = before["lastTransitionTime"]
    statuses = [_container_status(container)]
    statuses += [
        {
            "name": other["name"],
            "image": other["image"],
            "imageID": f"simulated://{other['image']}",
            "ready": True,
            "started": True,
            "restartCount": 0,
            "state": {"running": {"startedAt": start_time}},
        }
        for other in others
    ]
    return {
        "phase": "Running",
        "conditions": conditions,
        "containerStatuses": statuses,
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "podIP": pod_ip,
        "podIPs": [{"ip": pod_ip}],
        "startTime": start_time,
    }
