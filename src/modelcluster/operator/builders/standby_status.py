"""The ``WarmStandby`` condition of a cluster's status, and how a pod says it is a (borrowed) standby."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from modelcluster.api import BorrowedPod, Condition, ConditionStatus, ModelClusterStatus
from modelcluster.api.warm_pool import CLAIMED, CLAIMED_AT_ANNOTATION, CLAIMED_FOR_WAKE_ANNOTATION, STATE_LABEL
from modelcluster.kube.objects import metadata_of, parse_rfc3339

#: The status condition saying a borrowed standby serves the cluster (or did, for its last wake).
CONDITION = "WarmStandby"


def state_of(pod: Mapping[str, Any]) -> str | None:
    return (metadata_of(pod).get("labels") or {}).get(STATE_LABEL)


def own_pods(pods: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The cluster's own pods among those its selector lists (a borrowed standby is not one)."""
    return [pod for pod in pods if state_of(pod) is None]


def leaving(pod: Mapping[str, Any]) -> bool:
    """Being deleted, or ended."""
    return bool(metadata_of(pod).get("deletionTimestamp")) or (pod.get("status") or {}).get("phase") in (
        "Failed",
        "Succeeded",
    )


COLD_STEPS = (("scheduled", "created", "PodScheduled"), ("started", "PodScheduled", "ContainerStarted"),
              ("loaded", "ContainerStarted", "ModelLoaded"), ("total", "created", "ModelLoaded"))  # fmt: skip
STANDBY_STEPS = (("claimed", "woken", "claimed"), ("loaded", "claimed", "ModelLoaded"),
                 ("total", "woken", "ModelLoaded"))  # fmt: skip


def _time(value: Any) -> datetime | None:
    try:
        return parse_rfc3339(str(value)) if value else None
    except ValueError:
        return None


def wake_path_times(
    pod: Mapping[str, Any],
) -> tuple[str, dict[str, datetime | None], tuple[tuple[str, str, str], ...]]:
    """Which path brought ``pod`` (just Ready) to serve, the times of its steps, and the phases to observe:
    ``standby`` (a borrowed pod: wake, claim, Ready) or ``cold`` (the cluster's own: created, scheduled, started,
    Ready)."""
    from modelcluster.operator.builders.status import cold_start_times

    times = cold_start_times(pod)
    if state_of(pod) != CLAIMED:
        return "cold", times, COLD_STEPS
    annotations = metadata_of(pod).get("annotations") or {}
    times = {
        **times,
        "woken": _time(annotations.get(CLAIMED_FOR_WAKE_ANNOTATION)),
        "claimed": _time(annotations.get(CLAIMED_AT_ANNOTATION)),
    }
    return "standby", times, STANDBY_STEPS


def _serving(pod: Mapping[str, Any] | None) -> str | None:
    """The address of ``pod`` when it is a borrowed standby serving its cluster (claimed, not leaving)."""
    if pod is None or state_of(pod) != CLAIMED or leaving(pod):
        return None
    address = (pod.get("status") or {}).get("podIP")
    return str(address) if address else None


def borrowed_pod(pods: Sequence[Mapping[str, Any]], port: int) -> BorrowedPod | None:
    """The borrowed standby serving the cluster now (claimed, not leaving, with an address), for the gateway."""
    for pod in pods:
        address = _serving(pod)
        if address is not None:
            return BorrowedPod(name=str(metadata_of(pod).get("name")), address=address, port=port)
    return None


def lending_changed(new: Mapping[str, Any] | None, old: Mapping[str, Any] | None) -> bool:
    """Whether a pod's change starts or ends its serving as a borrowed standby: the status must say so at once
    (the gateway routes a wake's held requests from it), not after the usual coalescing of pod events."""
    return _serving(new) != _serving(old)


def standby_condition(
    pods: Sequence[Mapping[str, Any]], previous: ModelClusterStatus | None, generation: int | None, now: datetime
) -> list[Condition]:
    """``WarmStandby``: True while a borrowed standby serves the cluster, False (``HandedOver``) once it left.

    Absent for a cluster that never borrowed one: its wakes were cold starts of its own pods.
    """
    borrowed = [pod for pod in pods if state_of(pod) == CLAIMED and not leaving(pod)]
    before = next((c for c in (previous.conditions if previous else ()) if c.type == CONDITION), None)
    if borrowed:
        name = metadata_of(borrowed[0]).get("name")
        since = before.last_transition_time if before and before.status == ConditionStatus.TRUE else now
        return [
            Condition(
                type=CONDITION, status=ConditionStatus.TRUE, reason="Borrowed", observed_generation=generation,
                message=f"standby pod {name} serves the cluster until its own pod is ready",
                last_transition_time=since,
            )
        ]  # fmt: skip
    if before is None:
        return []
    if before.status == ConditionStatus.TRUE:
        return [
            Condition(
                type=CONDITION, status=ConditionStatus.FALSE, reason="HandedOver", observed_generation=generation,
                message="the last wake was served by a borrowed standby until the cluster's own pod was ready",
                last_transition_time=now,
            )
        ]  # fmt: skip
    return [before]
