"""Status of a ModelCluster, derived level-based from its Deployment and pods.

Everything here is pure: the same observation always gives the same status, so
a restarted operator or a missed event converges on the next derivation.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from modelcluster.api import ClusterPhase, Condition, ConditionStatus, ModelClusterStatus
from modelcluster.api.exit_codes import MODEL_LOAD_FAILED_EXIT_CODE
from modelcluster.kube.objects import metadata_of, parse_rfc3339
from modelcluster.operator.builders.standby_status import borrowed_pod, own_pods, standby_condition
from modelcluster.operator.builders.workload import PodOptions

READY = "Ready"
DEGRADED = "Degraded"

IMAGE_PULL_REASONS = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"})
CONTAINER_CONFIG_REASONS = frozenset({"CreateContainerConfigError", "CreateContainerError", "RunContainerError"})
CRASH_LOOP = "CrashLoopBackOff"
MODEL_LOAD_FAILED = "ModelLoadFailed"
UNSCHEDULABLE = "Unschedulable"
#: Pods the namespace's ResourceQuota refused (the words of the apiserver's refusal, then the reason reported).
EXCEEDED_QUOTA = "exceeded quota"
QUOTA_EXCEEDED = "QuotaExceeded"
#: An object the cluster did not create stands under the name of one of its children (see :mod:`.ownership`).
NAME_CONFLICT = "NameConflict"

# Worst first: the reported problem is the first one found in this order.
_SEVERITY = ("ImagePull", "ContainerConfig", MODEL_LOAD_FAILED, CRASH_LOOP, "Deployment", UNSCHEDULABLE)

K8sObject = Mapping[str, Any]


@dataclass(frozen=True)
class Problem:
    """Something that keeps a cluster from serving; ``kind`` orders problems by severity."""

    reason: str
    message: str
    kind: str = "Spec"
    #: Seconds after which the problem needs another look because it may clear unseen (a foreign object gone).
    recheck_after: float | None = None


@dataclass(frozen=True)
class Observation:
    """Everything one derivation reads."""

    generation: int
    now: datetime
    task: str | None = None
    endpoint: str | None = None
    selector: str | None = None
    target_replicas: int | None = None
    deployment: K8sObject | None = None
    pods: Sequence[K8sObject] = ()
    spec_problem: Problem | None = None
    previous: ModelClusterStatus | None = None
    #: Whether the children of ``generation`` were applied: only then does ``observedGeneration`` advance.
    in_place: bool = True
    #: The runtime's port on the pods (a borrowed standby's address in the status names it).
    pod_port: int = PodOptions.port


@dataclass(frozen=True)
class Derived:
    """The status, and when to derive again if time alone can change it (a pending deadline)."""

    status: ModelClusterStatus
    recheck_after: float | None = None
    problems: tuple[Problem, ...] = field(default=())


def parse_time(value: Any) -> datetime | None:
    """An RFC 3339 timestamp from the API (``...Z``) as an aware datetime."""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not value:
        return None
    try:
        return parse_rfc3339(value)
    except ValueError:
        return None


def _conditions(obj: K8sObject) -> list[Mapping[str, Any]]:
    status = obj.get("status") or {}
    return [c for c in status.get("conditions") or [] if isinstance(c, Mapping)]


def _condition(obj: K8sObject, type_: str) -> Mapping[str, Any] | None:
    return next((c for c in _conditions(obj) if c.get("type") == type_), None)


def _last_termination(container: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """How the container's latest run ended: its current state when terminated, else its last state."""
    for state in (container.get("state"), container.get("lastState")):
        terminated = (state or {}).get("terminated")
        if terminated:
            return dict(terminated)
    return None


def _failed_run(pod_name: str, container: Mapping[str, Any]) -> Problem | None:
    """A container not ready whose latest run ended in an error, reported from the first failure on (a kubelet
    restarts it at once, so no CrashLoopBackOff shows before the second): the runtime's load failure, with the
    cause it wrote to its termination message, or any other error exit."""
    if container.get("ready"):
        return None
    terminated = _last_termination(container)
    if terminated is None or not terminated.get("exitCode"):
        return None
    name = container.get("name", "?")
    code = terminated.get("exitCode")
    cause = str(terminated.get("message") or "").strip()
    if code == MODEL_LOAD_FAILED_EXIT_CODE:
        message = f"pod {pod_name}: container {name}: the model failed to load: {cause or f'exit code {code}'}"
        return Problem(MODEL_LOAD_FAILED, message, MODEL_LOAD_FAILED)
    reason = str(terminated.get("reason") or "Error")
    detail = f": {cause}" if cause else ""
    return Problem(reason, f"pod {pod_name}: container {name} exited with code {code} ({reason}){detail}", CRASH_LOOP)


def _container_problem(pod_name: str, container: Mapping[str, Any]) -> Problem | None:
    waiting = (container.get("state") or {}).get("waiting") or {}
    reason = waiting.get("reason")
    name = container.get("name", "?")
    detail = waiting.get("message") or ""
    if reason in IMAGE_PULL_REASONS:
        return Problem(
            reason,
            f"pod {pod_name}: container {name}: cannot pull image {container.get('image')}: {detail}".rstrip(": "),
            "ImagePull",
        )
    if reason in CONTAINER_CONFIG_REASONS:
        return Problem(reason, f"pod {pod_name}: container {name}: {detail}".rstrip(": "), "ContainerConfig")
    failed = _failed_run(pod_name, container)
    if failed is not None and (failed.reason == MODEL_LOAD_FAILED or reason != CRASH_LOOP):
        return failed
    if reason == CRASH_LOOP:
        terminated = (container.get("lastState") or {}).get("terminated") or {}
        last = ""
        if terminated:
            last = f"; last exit code {terminated.get('exitCode')} ({terminated.get('reason', 'unknown')})"
            if terminated.get("message"):
                last += f": {terminated['message']}"
        restarts = container.get("restartCount", 0)
        return Problem(
            CRASH_LOOP, f"pod {pod_name}: container {name} keeps crashing ({restarts} restarts){last}", CRASH_LOOP
        )
    return None


def _unschedulable_since(pod: K8sObject, fallback: datetime | None) -> datetime | None:
    scheduled = _condition(pod, "PodScheduled")
    if scheduled is None or scheduled.get("status") != "False" or scheduled.get("reason") != UNSCHEDULABLE:
        return None
    return parse_time(scheduled.get("lastTransitionTime")) or fallback


def pod_problems(
    pods: Iterable[K8sObject], now: datetime, deadline: timedelta, fallback_since: datetime | None
) -> tuple[list[Problem], float | None]:
    """Problems of the pods, and the seconds until the earliest unschedulable deadline still ahead."""
    problems: list[Problem] = []
    recheck: float | None = None
    for pod in pods:
        metadata = metadata_of(pod)
        if metadata.get("deletionTimestamp"):
            continue
        pod_name = metadata.get("name", "?")
        status = pod.get("status") or {}
        containers = [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]
        problems.extend(p for c in containers if (p := _container_problem(pod_name, c)) is not None)
        since = _unschedulable_since(pod, fallback_since)
        if since is None:
            continue
        remaining = (since + deadline - now).total_seconds()
        if remaining <= 0:
            message = _condition(pod, "PodScheduled") or {}
            problems.append(
                Problem(
                    UNSCHEDULABLE,
                    f"pod {pod_name} unschedulable for {int((now - since).total_seconds())}s: "
                    f"{message.get('message', 'no node fits')}",
                    UNSCHEDULABLE,
                )
            )
        else:
            recheck = remaining if recheck is None else min(recheck, remaining)
    return problems, recheck


def deployment_problems(deployment: K8sObject) -> list[Problem]:
    """Failures the Deployment itself reports: pods it cannot create, a missed progress deadline."""
    problems = []
    failure = _condition(deployment, "ReplicaFailure")
    if failure is not None and failure.get("status") == "True":
        message = str(failure.get("message", ""))
        # The namespace's ResourceQuota (a Tenant's) refused the pods: the apiserver says "exceeded quota".
        reason = QUOTA_EXCEEDED if EXCEEDED_QUOTA in message else str(failure.get("reason") or "ReplicaFailure")
        problems.append(Problem(reason, message, "Deployment"))
    progressing = _condition(deployment, "Progressing")
    if progressing is not None and progressing.get("reason") == "ProgressDeadlineExceeded":
        problems.append(Problem("ProgressDeadlineExceeded", str(progressing.get("message", "")), "Deployment"))
    return problems


def rolled_out(deployment: K8sObject) -> bool:
    """Whether the Deployment controller has seen the latest spec and no pod of an older template is left."""
    generation = int(metadata_of(deployment).get("generation") or 0)
    status = deployment.get("status") or {}
    if int(status.get("observedGeneration") or 0) < generation:
        return False
    return int(status.get("replicas") or 0) <= int(status.get("updatedReplicas") or 0)


def _worst(problems: Sequence[Problem]) -> Problem:
    return min(problems, key=lambda p: _SEVERITY.index(p.kind) if p.kind in _SEVERITY else -1)


def _condition_with_history(new: Condition, previous: ModelClusterStatus | None, now: datetime) -> Condition:
    old = next((c for c in (previous.conditions if previous else []) if c.type == new.type), None)
    since = old.last_transition_time if old is not None and old.status == new.status else None
    return new.model_copy(update={"last_transition_time": since or now})


def _phase(obs: Observation, deadline: timedelta) -> tuple[ClusterPhase, str, str, list[Problem], float | None]:
    if obs.spec_problem is not None:
        problem = obs.spec_problem
        return ClusterPhase.FAILED, problem.reason, problem.message, [problem], problem.recheck_after
    deployment = obs.deployment
    if deployment is None:
        return ClusterPhase.DEPLOYING, "Creating", "creating the Deployment", [], None
    spec = deployment.get("spec") or {}
    target = obs.target_replicas if obs.target_replicas is not None else int(spec.get("replicas", 1))
    ready = int((deployment.get("status") or {}).get("readyReplicas") or 0)
    created = parse_time(metadata_of(deployment).get("creationTimestamp"))
    # A borrowed warm standby's failure is not the cluster's: it is dropped and the cluster's own pod serves.
    problems, recheck = pod_problems(own_pods(obs.pods), obs.now, deadline, created)
    problems = [*problems, *deployment_problems(deployment)]
    if target == 0:
        return ClusterPhase.STOPPED, "ScaledToZero", "no replicas requested", [], None
    if ready >= 1:
        if not rolled_out(deployment):
            updated = int((deployment.get("status") or {}).get("updatedReplicas") or 0)
            message = f"rolling out: {updated}/{target} replicas updated, {ready} ready"
            return ClusterPhase.DEPLOYING, "RollingOut", message, problems, recheck
        message = f"{ready}/{target} replicas ready"
        return ClusterPhase.RUNNING, "Running", message, problems, recheck
    if problems:
        worst = _worst(problems)
        return ClusterPhase.FAILED, worst.reason, worst.message, problems, recheck
    if recheck is not None:
        return ClusterPhase.DEPLOYING, "WaitingForNodes", "pods are not scheduled yet", [], recheck
    return ClusterPhase.DEPLOYING, "Starting", f"0/{target} replicas ready", [], None


def derive_status(obs: Observation, unschedulable_deadline: timedelta) -> Derived:
    """The status of a ModelCluster from what the cluster shows now."""
    now = obs.now.replace(microsecond=0)
    phase, reason, message, problems, recheck = _phase(obs, unschedulable_deadline)
    previous = obs.previous
    observed = obs.generation if obs.in_place else (previous.observed_generation if previous else None)
    deployment_status = (obs.deployment or {}).get("status") or {}
    ready_condition = Condition(
        type=READY,
        status=ConditionStatus.TRUE if phase is ClusterPhase.RUNNING else ConditionStatus.FALSE,
        reason=reason,
        message=message,
        observed_generation=observed,
    )
    worst = _worst(problems) if problems else None
    degraded_condition = Condition(
        type=DEGRADED,
        status=ConditionStatus.TRUE if worst else ConditionStatus.FALSE,
        reason=worst.reason if worst else "AsExpected",
        message=worst.message if worst else "",
        observed_generation=observed,
    )
    status = ModelClusterStatus(
        status=phase,
        reason=reason,
        message=message,
        task=obs.task,
        replicas=int(deployment_status.get("replicas") or 0),
        ready_replicas=int(deployment_status.get("readyReplicas") or 0),
        target_replicas=obs.target_replicas,
        queue_depth=previous.queue_depth if previous else None,
        last_request_time=previous.last_request_time if previous else None,
        endpoint=obs.endpoint,
        selector=obs.selector,
        observed_generation=observed,
        borrowed_pod=borrowed_pod(obs.pods, obs.pod_port),
        conditions=[
            _condition_with_history(ready_condition, previous, now),
            _condition_with_history(degraded_condition, previous, now),
            *cold_start_conditions(own_pods(obs.pods), observed),
            *standby_condition(obs.pods, previous, observed, now),
        ],
    )
    return Derived(status=status, recheck_after=recheck, problems=tuple(problems))


#: The phases of a pod's cold start, each a condition whose lastTransitionTime is when it happened.
COLD_START_PHASES = ("PodScheduled", "ContainerStarted", "ModelLoaded")


def cold_start_times(pod: K8sObject) -> dict[str, datetime | None]:
    """When ``pod`` was created, scheduled, its container started, and its model loaded (Ready: the runtime
    turns ready once the model is loaded)."""
    status = pod.get("status") or {}
    conditions = {c.get("type"): c for c in _conditions(pod)}
    scheduled = conditions.get("PodScheduled") or {}
    ready = conditions.get("Ready") or {}
    containers = status.get("containerStatuses") or []
    running = ((containers[0].get("state") or {}).get("running") or {}) if containers else {}
    return {
        "created": parse_time(metadata_of(pod).get("creationTimestamp")),
        "PodScheduled": parse_time(scheduled.get("lastTransitionTime")) if scheduled.get("status") == "True" else None,
        "ContainerStarted": parse_time(running.get("startedAt")),
        "ModelLoaded": parse_time(ready.get("lastTransitionTime")) if ready.get("status") == "True" else None,
    }


def cold_start_conditions(pods: Sequence[K8sObject], generation: int | None) -> list[Condition]:
    """The cold start of the newest pod, phase by phase, with the time each phase was reached."""
    if not pods:
        return []
    newest = max(pods, key=lambda pod: str(metadata_of(pod).get("creationTimestamp") or ""))
    name = metadata_of(newest).get("name")
    times = cold_start_times(newest)
    conditions = []
    for phase in COLD_START_PHASES:
        reached = times[phase]
        conditions.append(
            Condition(
                type=phase,
                status=ConditionStatus.TRUE if reached else ConditionStatus.FALSE,
                reason="Reached" if reached else "Pending",
                message=f"pod {name}",
                observed_generation=generation,
                last_transition_time=reached or times["created"],
            )
        )
    return conditions


def status_changed(old: ModelClusterStatus | None, new: ModelClusterStatus) -> bool:
    """Whether writing ``new`` changes anything (a write that changes nothing is skipped)."""
    return old is None or old.to_k8s() != new.to_k8s()
