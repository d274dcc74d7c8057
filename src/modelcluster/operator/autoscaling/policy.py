"""The scaling policy: how many replicas a cluster should run now. Pure; no I/O, no clock.

Inputs are what the autoscaler observed (demand from gateways and runtime pods, replicas,
the spec) and a small history; the output is the target and the history to keep.

- **Demand** is the larger of the gateways' outstanding requests (held + in flight, summed
  over gateway replicas) and the gateways' held requests plus the runtime pods' own queue and
  in-flight counts (traffic that bypasses the gateway shows only there).
- **Active** while there is demand, or while the last activity (a request's arrival or
  completion, or a wake) is less than ``timeout`` seconds old, or the cluster is younger than
  that. An idle cluster drops to ``min``; a stopped one with demand comes straight back to
  ``max(desired, 1)`` or more for the waiting queue.
- **Up at once**: the target rises on the first tick that needs more replicas. While no pod is
  ready yet, held requests alone size the target and starting pods count as capacity, so a
  slow cold start does not launch more pods than the queue needs. That size is remembered as
  a recommendation like any other, so a queue served quickly once pods are ready does not
  shrink the cluster before a whole window has passed.
- **Never above max**: a lowered ``max`` is obeyed on the next tick.
- **Down slowly**: the target falls only to the highest recommendation of the last
  ``stabilization_s`` seconds, by at most half per step, one step per ``down_step_s``, never
  below ``desired`` while active; and not at all until a whole stabilization window has been
  observed (a restarted operator does not shrink a busy cluster).
- **Not down before demand is known**: until the demand feeds have answered once after a start
  (``demand_known``), no cluster is lowered: the status's idle clock is written only about once a
  minute, so it alone may say "idle" of a cluster whose requests a gateway is about to report.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace


@dataclass(frozen=True)
class ScalingSpec:
    min: int
    desired: int
    max: int
    timeout_s: float
    target_per_replica: float  # outstanding requests one replica should carry


@dataclass(frozen=True)
class Observed:
    replicas: int  # the Deployment's spec.replicas now
    ready: int
    gateway_outstanding: int = 0
    gateway_held: int = 0
    runtime_busy: int = 0  # queue + in flight, summed over the cluster's pods
    last_activity: float | None = None  # unix time of the latest arrival/completion/wake seen anywhere
    created_at: float | None = None  # a new cluster runs `desired` for `timeout` seconds even without requests
    demand_known: bool = True  # the demand feeds have answered since the start: demand 0 means none


@dataclass(frozen=True)
class History:
    since: float  # when observation of this cluster began (a restart starts a new window)
    recommendations: tuple[tuple[float, int], ...] = ()
    last_scale: float | None = None


@dataclass(frozen=True)
class Tunables:
    stabilization_s: float = 30.0
    down_step_s: float = 5.0
    start_grace_s: float = 900.0  # how long past its idle deadline a cluster whose pods are still starting is kept


@dataclass(frozen=True)
class Decision:
    target: int
    reason: str
    history: History = field(compare=False)


def demand(observed: Observed) -> int:
    return max(observed.gateway_outstanding, observed.gateway_held + observed.runtime_busy)


def recently_requested(observed: Observed, spec: ScalingSpec, now: float) -> bool:
    """Demand now, or a request (or wake) less than ``timeout`` seconds ago."""
    if demand(observed) > 0:
        return True
    return observed.last_activity is not None and now - observed.last_activity < spec.timeout_s


def is_active(observed: Observed, spec: ScalingSpec, now: float) -> bool:
    """Recently requested, or created less than ``timeout`` seconds ago."""
    if recently_requested(observed, spec, now):
        return True
    return observed.created_at is not None and now - observed.created_at < spec.timeout_s


def idle_deadline(observed: Observed, spec: ScalingSpec) -> float | None:
    """When an active cluster without demand becomes idle (unix time), if it has seen any activity."""
    if observed.last_activity is None:
        return None
    return observed.last_activity + spec.timeout_s


def decide(
    spec: ScalingSpec, observed: Observed, history: History, now: float, tunables: Tunables = Tunables()
) -> Decision:
    """The replica count for now, and the history to pass to the next call."""
    decision = _decide(spec, observed, history, now, tunables)
    if observed.demand_known or decision.target >= observed.replicas:
        return decision
    # Demand not heard yet: never lower on what may be an old idle clock; a raise, or a lowered max, goes.
    kept = replace(decision.history, last_scale=history.last_scale)
    if observed.replicas > spec.max:
        return _decided(max(spec.max, decision.target), "MaxLowered", observed, kept, now)
    return Decision(observed.replicas, "AwaitingDemand", kept)


def _decide(spec: ScalingSpec, observed: Observed, history: History, now: float, tunables: Tunables) -> Decision:
    load = demand(observed)
    window_start = now - tunables.stabilization_s
    kept = tuple(r for r in history.recommendations if r[0] >= window_start)
    if not is_active(observed, spec, now):
        if observed.ready == 0 and observed.replicas > spec.min and _still_starting(observed, spec, now, tunables):
            # Never tear down pods that are still starting: a slow first start is not idleness (max still holds).
            target = min(observed.replicas, spec.max)
            return _decided(target, "Starting", observed, replace(history, recommendations=kept), now)
        target, reason = spec.min, "Idle"
        return _decided(target, reason, observed, replace(history, recommendations=kept), now)
    # Requests (or a wake) want at least one replica; a new cluster nobody has called yet runs `desired`.
    floor = max(spec.desired, 1) if recently_requested(observed, spec, now) else spec.desired
    per_replica = max(spec.target_per_replica, 1e-9)
    if observed.ready == 0:
        # Cold: size by the waiting queue only; pods already starting count as capacity.
        sized = min(spec.max, max(floor, math.ceil(observed.gateway_held / per_replica)))
        target = min(spec.max, max(sized, observed.replicas))
        reason = "Waking" if observed.replicas == 0 else "Starting"
        return _decided(target, reason, observed, replace(history, recommendations=(*kept, (now, sized))), now)
    recommendation = min(spec.max, max(floor, math.ceil(load / per_replica)))
    kept = (*kept, (now, recommendation))
    history = replace(history, recommendations=kept)
    current = observed.replicas
    if current > spec.max:
        return _decided(spec.max, "MaxLowered", observed, history, now)
    if recommendation > current:
        return _decided(recommendation, "QueueDepth", observed, history, now)
    if recommendation == current:
        return Decision(current, "Steady", history)
    # Scaling down: only after a full window, to the window's highest recommendation, half at most per step.
    if now - history.since < tunables.stabilization_s:
        return Decision(current, "Stabilizing", history)
    if history.last_scale is not None and now - history.last_scale < tunables.down_step_s:
        return Decision(current, "Stabilizing", history)
    stable = max(r[1] for r in kept)
    target = max(stable, math.ceil(current / 2), floor, spec.min)
    if target >= current:
        return Decision(current, "Stabilizing", history)
    return _decided(target, "LowerLoad", observed, history, now)


def _still_starting(observed: Observed, spec: ScalingSpec, now: float, tunables: Tunables) -> bool:
    started = max((t for t in (observed.last_activity, observed.created_at) if t is not None), default=None)
    return started is not None and now - started < spec.timeout_s + tunables.start_grace_s


def _decided(target: int, reason: str, observed: Observed, history: History, now: float) -> Decision:
    if target != observed.replicas:
        history = replace(history, last_scale=now)
    return Decision(target, reason if target != observed.replicas else "Steady", history)
