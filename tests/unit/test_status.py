from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from modelcluster.api import ClusterPhase, ConditionStatus, ModelClusterStatus
from modelcluster.operator.builders.status import (
    DEGRADED,
    READY,
    Derived,
    Observation,
    Problem,
    derive_status,
    parse_time,
    status_changed,
)

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
DEADLINE = timedelta(minutes=5)


def _ts(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def deployment(replicas: int = 1, ready: int = 0, created: datetime = NOW, **conditions: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "m", "creationTimestamp": _ts(created)},
        "spec": {"replicas": replicas},
        "status": {
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": ready,
            "conditions": [{"type": k, **v} for k, v in conditions.items()],
        },
    }


def pod(
    name: str = "m-1", waiting: str | None = None, unschedulable_since: datetime | None = None, **extra: Any
) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": "Pending", "conditions": []}
    if waiting is not None:
        status["containerStatuses"] = [
            {
                "name": "runtime",
                "image": "img:1",
                "restartCount": 7,
                "state": {"waiting": {"reason": waiting, "message": "details"}},
                **extra,
            }
        ]
    if unschedulable_since is not None:
        status["conditions"].append(
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.",
                "lastTransitionTime": _ts(unschedulable_since),
            }
        )
    return {"metadata": {"name": name}, "status": status}


def derive(**kwargs: Any) -> Derived:
    kwargs.setdefault("target_replicas", (kwargs.get("deployment") or {}).get("spec", {}).get("replicas"))
    return derive_status(Observation(generation=4, now=NOW, **kwargs), DEADLINE)


def _condition(derived: Derived, type_: str) -> Any:
    return next(c for c in derived.status.conditions if c.type == type_)


def test_no_deployment_yet_is_deploying() -> None:
    derived = derive()
    assert derived.status.status is ClusterPhase.DEPLOYING
    assert derived.status.observed_generation == 4


def test_running_when_a_replica_is_ready() -> None:
    derived = derive(deployment=deployment(replicas=2, ready=1), endpoint="http://m.ns.svc:8000", task="chat")
    status = derived.status
    assert status.status is ClusterPhase.RUNNING
    assert (status.replicas, status.ready_replicas, status.target_replicas) == (2, 1, 2)
    assert status.endpoint == "http://m.ns.svc:8000"
    assert status.task == "chat"
    ready = _condition(derived, READY)
    assert ready.status is ConditionStatus.TRUE
    assert ready.observed_generation == 4
    assert _condition(derived, DEGRADED).status is ConditionStatus.FALSE


def test_starting_is_deploying() -> None:
    derived = derive(deployment=deployment(), pods=[pod(waiting="ContainerCreating")])
    assert derived.status.status is ClusterPhase.DEPLOYING
    assert derived.status.reason == "Starting"


def test_zero_replicas_is_stopped() -> None:
    assert derive(deployment=deployment(replicas=0)).status.status is ClusterPhase.STOPPED


@pytest.mark.parametrize("reason", ["ImagePullBackOff", "ErrImagePull", "InvalidImageName"])
def test_image_pull_errors_fail(reason: str) -> None:
    derived = derive(deployment=deployment(), pods=[pod(waiting=reason)])
    assert derived.status.status is ClusterPhase.FAILED
    assert derived.status.reason == reason
    assert "img:1" in (derived.status.message or "")
    ready = _condition(derived, READY)
    assert (ready.status, ready.reason) == (ConditionStatus.FALSE, reason)
    assert _condition(derived, DEGRADED).status is ConditionStatus.TRUE


def test_crash_loop_fails_with_last_exit() -> None:
    last = {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}
    derived = derive(deployment=deployment(), pods=[pod(waiting="CrashLoopBackOff", lastState=last)])
    assert derived.status.status is ClusterPhase.FAILED
    assert derived.status.reason == "CrashLoopBackOff"
    assert "137" in (derived.status.message or "") and "OOMKilled" in (derived.status.message or "")


def test_image_pull_is_worse_than_crash_loop() -> None:
    pods = [pod("a", waiting="CrashLoopBackOff"), pod("b", waiting="ImagePullBackOff")]
    assert derive(deployment=deployment(2), pods=pods).status.reason == "ImagePullBackOff"


def test_unschedulable_within_deadline_is_deploying_and_rechecks() -> None:
    since = NOW - timedelta(minutes=2)
    derived = derive(deployment=deployment(), pods=[pod(unschedulable_since=since)])
    assert derived.status.status is ClusterPhase.DEPLOYING
    assert derived.recheck_after == pytest.approx(180)


def test_unschedulable_past_deadline_fails() -> None:
    since = NOW - timedelta(minutes=6)
    derived = derive(deployment=deployment(), pods=[pod(unschedulable_since=since)])
    assert derived.status.status is ClusterPhase.FAILED
    assert derived.status.reason == "Unschedulable"
    assert "Insufficient nvidia.com/gpu" in (derived.status.message or "")


def test_unschedulable_without_transition_time_counts_from_deployment_creation() -> None:
    unscheduled = pod()
    unscheduled["status"]["conditions"] = [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}]
    old = deployment(created=NOW - timedelta(hours=1))
    assert derive(deployment=old, pods=[unscheduled]).status.status is ClusterPhase.FAILED
    young = deployment(created=NOW - timedelta(seconds=10))
    assert derive(deployment=young, pods=[unscheduled]).status.status is ClusterPhase.DEPLOYING


def test_running_with_a_failing_pod_is_degraded() -> None:
    derived = derive(deployment=deployment(2, ready=1), pods=[pod("b", waiting="ImagePullBackOff")])
    assert derived.status.status is ClusterPhase.RUNNING
    assert _condition(derived, DEGRADED).status is ConditionStatus.TRUE


def test_deleted_pods_are_ignored() -> None:
    terminating = pod(waiting="CrashLoopBackOff")
    terminating["metadata"]["deletionTimestamp"] = _ts(NOW)
    assert derive(deployment=deployment(), pods=[terminating]).status.status is ClusterPhase.DEPLOYING


def test_deployment_reported_failures() -> None:
    refused = 'pods "m-1" is forbidden: exceeded quota: modelcluster-tenant, requested: requests.nvidia.com/gpu=1'
    quota = {"status": "True", "reason": "FailedCreate", "message": refused}
    derived = derive(deployment=deployment(ReplicaFailure=quota)).status
    assert (derived.status, derived.reason, derived.message) == (ClusterPhase.FAILED, "QuotaExceeded", refused)
    other = {"status": "True", "reason": "FailedCreate", "message": "pods are forbidden: no service account"}
    assert derive(deployment=deployment(ReplicaFailure=other)).status.reason == "FailedCreate"
    stuck = {"status": "False", "reason": "ProgressDeadlineExceeded", "message": "timed out"}
    assert derive(deployment=deployment(Progressing=stuck)).status.reason == "ProgressDeadlineExceeded"


def test_spec_problem_fails_without_children() -> None:
    derived = derive(spec_problem=Problem("UnknownModel", "set spec.task"))
    assert derived.status.status is ClusterPhase.FAILED
    assert (derived.status.reason, derived.status.message) == ("UnknownModel", "set spec.task")
    assert derived.problems[0].kind == "Spec"


def test_transition_time_kept_while_status_holds() -> None:
    first = derive(deployment=deployment(ready=1))
    earlier = NOW - timedelta(hours=1)
    previous = first.status.model_copy(
        update={"conditions": [c.model_copy(update={"last_transition_time": earlier}) for c in first.status.conditions]}
    )
    again = derive(deployment=deployment(ready=1), previous=previous)
    assert _condition(again, READY).last_transition_time == earlier
    flipped = derive(deployment=deployment(ready=0), previous=previous)
    assert _condition(flipped, READY).last_transition_time == NOW


def test_derivation_is_idempotent() -> None:
    first = derive(deployment=deployment(ready=1))
    second = derive(deployment=deployment(ready=1), previous=first.status)
    assert not status_changed(first.status, second.status)
    assert status_changed(None, second.status)


def test_status_round_trips_through_the_api_form() -> None:
    status = derive(deployment=deployment(ready=1)).status
    assert ModelClusterStatus.model_validate(status.to_k8s()) == status


@pytest.mark.parametrize("value", [None, "", "garbage", 3])
def test_parse_time_tolerates_garbage(value: Any) -> None:
    assert parse_time(value) is None


def test_ready_waits_for_the_deployment_controller_to_see_the_new_spec() -> None:
    pending = deployment(ready=1)
    pending["metadata"]["generation"] = 3
    pending["status"]["observedGeneration"] = 2
    status = derive_status(Observation(generation=2, now=NOW, deployment=pending), DEADLINE).status
    assert status.status is ClusterPhase.DEPLOYING
    assert status.reason == "RollingOut"
    assert status.conditions[0].status.value == "False"


def test_ready_waits_until_no_pod_of_the_old_template_is_left() -> None:
    rolling = deployment(ready=1)
    rolling["status"].update({"replicas": 2, "updatedReplicas": 1})
    status = derive_status(Observation(generation=2, now=NOW, deployment=rolling), DEADLINE).status
    assert status.status is ClusterPhase.DEPLOYING
    assert "1/1 replicas updated" in (status.message or "")
    rolled = deployment(ready=1)
    assert derive_status(Observation(generation=2, now=NOW, deployment=rolled), DEADLINE).status.status is (
        ClusterPhase.RUNNING
    )


def test_observed_generation_holds_until_the_children_are_applied() -> None:
    previous = derive_status(Observation(generation=2, now=NOW, deployment=deployment(ready=1)), DEADLINE).status
    behind = Observation(generation=3, now=NOW, deployment=deployment(ready=1), previous=previous, in_place=False)
    status = derive_status(behind, DEADLINE).status
    assert status.observed_generation == 2
    assert {c.observed_generation for c in status.conditions} == {2}
    applied = Observation(generation=3, now=NOW, deployment=deployment(ready=1), previous=previous)
    assert derive_status(applied, DEADLINE).status.observed_generation == 3
