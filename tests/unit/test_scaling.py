"""The scaling policy (pure) and the demand signals it reads, without a cluster."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelcluster.gateway.demand import Demand
from modelcluster.gateway.metrics import GatewayMetrics
from modelcluster.operator.autoscaling.loop import metrics_port_of
from modelcluster.operator.autoscaling.policy import (
    Decision,
    History,
    Observed,
    ScalingSpec,
    Tunables,
    decide,
    demand,
    is_active,
    recently_requested,
)
from modelcluster.operator.autoscaling.signals import ModelSignal, parse_gateway, parse_runtime, sum_gateways
from modelcluster.runtime.metrics import RuntimeMetrics

T0 = 1_800_000_000.0  # a fixed "now" (unix seconds): the policy has no clock of its own
TUNABLES = Tunables(stabilization_s=30.0, down_step_s=5.0)


def spec(
    minimum: int = 0, desired: int = 1, maximum: int = 4, timeout: float = 300.0, target: float = 4.0
) -> ScalingSpec:
    return ScalingSpec(min=minimum, desired=desired, max=maximum, timeout_s=timeout, target_per_replica=target)


def warm(replicas: int, outstanding: int = 0, held: int = 0, busy: int = 0, last: float | None = T0) -> Observed:
    """A cluster whose pods are all ready."""
    return Observed(
        replicas=replicas,
        ready=replicas,
        gateway_outstanding=outstanding,
        gateway_held=held,
        runtime_busy=busy,
        last_activity=last,
    )


def settled(now: float = T0) -> History:
    """A history observed for long enough that scale-down is allowed now."""
    return History(since=now - 3600.0)


def floor_of(scaling: ScalingSpec, observed: Observed, now: float) -> int:
    """Requests (or a wake) want at least one replica; a new cluster nobody has called runs ``desired``."""
    return max(scaling.desired, 1) if recently_requested(observed, scaling, now) else scaling.desired


def recommendation_of(scaling: ScalingSpec, observed: Observed, now: float) -> int:
    """What the cluster needs for this observation, computed here from the documented rules."""
    per_replica = scaling.target_per_replica
    if observed.ready == 0:
        need = math.ceil(observed.gateway_held / per_replica)
    else:
        need = math.ceil(demand(observed) / per_replica)
    return min(scaling.max, max(floor_of(scaling, observed, now), need))


def still_starting(scaling: ScalingSpec, observed: Observed, now: float) -> bool:
    """No pod ready and the last sign of life (a request, a wake, the creation) within timeout + start grace."""
    stamps = [t for t in (observed.last_activity, observed.created_at) if t is not None]
    return (
        observed.ready == 0
        and observed.replicas > scaling.min
        and bool(stamps)
        and now - max(stamps) < scaling.timeout_s + TUNABLES.start_grace_s
    )


# --- single decisions ------------------------------------------------------------------------------------------


def test_demand_is_the_larger_of_the_gateway_count_and_held_plus_runtime_queues() -> None:
    assert demand(warm(1, outstanding=10, held=2, busy=3)) == 10
    assert demand(warm(1, outstanding=4, held=2, busy=7)) == 9  # traffic that bypassed the gateway


def test_an_idle_cluster_drops_to_min_at_once() -> None:
    scaling = spec(minimum=1, desired=2, maximum=8, timeout=300)
    decision = decide(scaling, warm(6, last=T0 - 301), settled(), T0, TUNABLES)
    assert (decision.target, decision.reason) == (1, "Idle")
    assert decision.history.last_scale == T0


def test_nothing_is_lowered_until_demand_is_known_but_raises_and_a_lowered_max_go_through() -> None:
    from dataclasses import replace

    scaling = spec(minimum=0, desired=1, maximum=8, timeout=30, target=1)
    unknown = replace(warm(6, last=T0 - 50), demand_known=False)  # idle by an old clock: maybe not idle at all
    history = settled()
    decision = decide(scaling, unknown, history, T0, TUNABLES)
    assert (decision.target, decision.reason) == (6, "AwaitingDemand")
    assert decision.history.last_scale == history.last_scale  # nothing scaled
    raised = decide(scaling, replace(unknown, gateway_outstanding=8, last_activity=T0), history, T0, TUNABLES)
    assert raised.target == 8  # demand already heard of raises at once
    lowered_max = decide(spec(maximum=2, timeout=30), unknown, history, T0, TUNABLES)
    assert lowered_max.target == 2  # max holds whatever is known
    assert decide(scaling, replace(unknown, demand_known=True), history, T0, TUNABLES).target == 0


def test_an_idle_cluster_with_min_zero_is_torn_down_and_one_never_seen_stays_down() -> None:
    scaling = spec(minimum=0, desired=1)
    assert decide(scaling, warm(1, last=T0 - 1000), settled(), T0, TUNABLES).target == 0
    assert decide(scaling, Observed(replicas=0, ready=0, last_activity=None), settled(), T0, TUNABLES).target == 0


def test_activity_inside_the_timeout_keeps_desired_without_demand() -> None:
    scaling = spec(minimum=0, desired=2, maximum=8, timeout=300)
    decision = decide(scaling, warm(2, last=T0 - 299.9), settled(), T0, TUNABLES)
    assert (decision.target, decision.reason) == (2, "Steady")
    assert decision.history.last_scale is None


def test_the_idle_clock_is_exactly_timeout_seconds() -> None:
    scaling = spec(timeout=300)
    assert is_active(warm(1, last=T0 - 299.999), scaling, T0)
    assert not is_active(warm(1, last=T0 - 300), scaling, T0)
    assert is_active(warm(1, outstanding=1, last=None), scaling, T0)  # demand alone keeps it active


@pytest.mark.parametrize(
    ("desired", "maximum", "held", "expected"),
    [
        (0, 4, 1, 1),  # desired 0 still wakes one pod
        (1, 4, 1, 1),
        (3, 8, 1, 3),  # desired first
        (1, 8, 9, 3),  # the held queue needs ceil(9 / 4) = 3
        (1, 8, 400, 8),  # capped at max
        (2, 2, 400, 2),
    ],
)
def test_a_stopped_cluster_with_demand_wakes_to_desired_or_its_held_queue(
    desired: int, maximum: int, held: int, expected: int
) -> None:
    scaling = spec(minimum=0, desired=desired, maximum=maximum, target=4.0)
    observed = Observed(replicas=0, ready=0, gateway_outstanding=held, gateway_held=held, last_activity=T0 - 5000)
    decision = decide(scaling, observed, settled(), T0, TUNABLES)
    assert (decision.target, decision.reason) == (expected, "Waking")
    assert decision.history.last_scale == T0


def test_forty_held_at_four_per_pod_ask_for_exactly_ten_and_no_more_during_a_cold_start() -> None:
    """Anchors item 3: 40 held, target 4 per pod, max 20, no pod ready -> 10, and it stays 10 for 60 s."""
    scaling = spec(minimum=0, desired=1, maximum=20, timeout=300, target=4.0)
    history = History(since=T0 - 3600)
    replicas = 0
    targets = []
    for second in range(61):
        now = T0 + second
        observed = Observed(
            replicas=replicas, ready=0, gateway_outstanding=40, gateway_held=40, last_activity=T0 - 1000 + second
        )
        decision = decide(scaling, observed, history, now, TUNABLES)
        history, replicas = decision.history, decision.target
        targets.append(decision.target)
    assert targets == [10] * 61


def test_held_requests_alone_size_a_cold_start() -> None:
    scaling = spec(desired=1, maximum=20, target=4.0)
    # Counts of requests already sent somewhere (stale in-flight, runtime queues) do not add pods while none is ready.
    observed = Observed(replicas=0, ready=0, gateway_outstanding=40, gateway_held=8, runtime_busy=30, last_activity=T0)
    assert decide(scaling, observed, settled(), T0, TUNABLES).target == 2


def test_a_new_cluster_nobody_called_runs_desired_for_its_timeout_then_min() -> None:
    for desired in (0, 2):
        scaling = spec(minimum=0, desired=desired, maximum=4, timeout=300)
        new = Observed(replicas=desired, ready=desired, created_at=T0 - 299, last_activity=None)
        decision = decide(scaling, new, settled(), T0, TUNABLES)
        assert decision.target == desired, desired  # not woken to 1 by its creation alone
        old = Observed(replicas=desired, ready=desired, created_at=T0 - 300, last_activity=None)
        assert decide(scaling, old, settled(), T0, TUNABLES).target == 0


def test_pods_still_starting_count_as_capacity_while_none_is_ready() -> None:
    scaling = spec(desired=1, maximum=20, target=4.0)
    observed = Observed(replicas=6, ready=0, gateway_outstanding=8, gateway_held=8, last_activity=T0)
    decision = decide(scaling, observed, settled(), T0, TUNABLES)
    assert (decision.target, decision.reason) == (6, "Steady")  # 2 needed, 6 already starting: none removed


def test_scale_up_happens_on_the_first_call_that_needs_it() -> None:
    scaling = spec(desired=1, maximum=8, target=2.0)
    fresh = History(since=T0)  # even right after a restart
    decision = decide(scaling, warm(1, outstanding=9), fresh, T0, TUNABLES)
    assert (decision.target, decision.reason) == (5, "QueueDepth")
    assert decision.history.last_scale == T0
    capped = decide(scaling, warm(1, outstanding=900), fresh, T0, TUNABLES)
    assert capped.target == 8


def test_a_lowered_max_is_obeyed_on_the_next_call() -> None:
    scaling = spec(desired=1, maximum=3, target=2.0)
    decision = decide(scaling, warm(10, outstanding=100), History(since=T0), T0, TUNABLES)
    assert decision.target == 3
    cold = Observed(replicas=10, ready=0, gateway_outstanding=100, gateway_held=100, last_activity=T0)
    assert decide(scaling, cold, History(since=T0), T0, TUNABLES).target == 3


def test_pods_kept_while_still_starting_stay_within_a_lowered_max() -> None:
    scaling = spec(minimum=0, desired=1, maximum=2, timeout=300)
    starting = Observed(replicas=5, ready=0, last_activity=T0 - 400)  # idle, but its pods never got ready
    decision = decide(scaling, starting, settled(), T0, TUNABLES)
    assert (decision.target, decision.reason) == (2, "Starting")


def test_scale_down_waits_for_a_whole_window_since_observation_began() -> None:
    scaling = spec(desired=1, maximum=8, target=1.0)
    since = T0
    history = History(since=since)
    for second in range(30):
        decision = decide(scaling, warm(8), history, since + second, TUNABLES)
        assert (decision.target, decision.reason) == (8, "Stabilizing"), second
        history = decision.history
    decision = decide(scaling, warm(8), history, since + 30, TUNABLES)
    assert (decision.target, decision.reason) == (4, "LowerLoad")


def test_scale_down_goes_to_the_highest_recommendation_of_the_window() -> None:
    scaling = spec(desired=1, maximum=10, target=1.0)
    history = History(since=T0 - 3600, recommendations=((T0 - 29, 7), (T0 - 40, 10)), last_scale=T0 - 100)
    decision = decide(scaling, warm(10), history, T0, TUNABLES)
    assert (decision.target, decision.reason) == (7, "LowerLoad")  # 7 is in the window; 10 has left it
    assert [r for r in decision.history.recommendations if r[0] < T0 - 30] == []


def test_scale_down_halves_at_most_and_steps_once_per_down_step() -> None:
    scaling = spec(desired=1, maximum=16, target=1.0)
    history = settled()
    replicas, now = 16, T0
    changes: list[tuple[float, int]] = []
    while replicas > 1 and now < T0 + 120:
        decision = decide(scaling, warm(replicas), history, now, TUNABLES)
        if decision.target != replicas:
            changes.append((now - T0, decision.target))
        history, replicas = decision.history, decision.target
        now += 1
    assert changes == [(0, 8), (5, 4), (10, 2), (15, 1)]


def test_a_restarted_autoscaler_does_not_scale_a_busy_cluster_down() -> None:
    scaling = spec(desired=1, maximum=8, target=4.0)
    history = History(since=T0, last_scale=T0 - 3600)  # what a restart builds from the status
    for second in range(30):
        # Busy, yet needing fewer pods than run: an operator that just started has not seen a whole window.
        decision = decide(scaling, warm(8, outstanding=4), history, T0 + second, TUNABLES)
        assert decision.target == 8, second
        history = decision.history


def test_a_queue_served_right_after_a_cold_start_does_not_shrink_the_cluster_within_the_window() -> None:
    scaling = spec(desired=1, maximum=20, target=4.0)
    history = settled()
    cold = Observed(replicas=10, ready=0, gateway_outstanding=40, gateway_held=40, last_activity=T0)
    history = decide(scaling, cold, history, T0, TUNABLES).history
    # All pods ready a second later and the queue already answered: the 10 the queue needed stays a window long.
    for second in range(1, 31):
        decision = decide(scaling, warm(10, last=T0 + second), history, T0 + second, TUNABLES)
        assert decision.target == 10, second
        history = decision.history
    assert decide(scaling, warm(10, last=T0 + 31), history, T0 + 31, TUNABLES).target == 5


def test_one_request_a_minute_never_scales_to_min_and_the_last_one_ends_at_min_one_tick_after_timeout() -> None:
    """Anchors item 7, ticking every second: activity, not a sampled gauge, decides idleness."""
    scaling = spec(minimum=0, desired=1, maximum=4, timeout=300, target=4.0)
    history = History(since=T0)
    replicas = 1
    last_activity = T0
    arrivals = [T0 + 60 * k for k in range(1, 21)]  # one request per minute for 20 minutes, each 0.5 s long
    last_request_done = arrivals[-1] + 0.5
    at_min_since: float | None = None
    for tick in range(0, 20 * 60 + 400):
        now = T0 + tick
        busy = any(start <= now < start + 0.5 for start in arrivals)
        for start in arrivals:
            for stamp in (start, start + 0.5):  # arrival and completion are both activity
                if stamp <= now:
                    last_activity = max(last_activity, stamp)
        if replicas:
            observed = warm(replicas, outstanding=int(busy), last=last_activity)
        else:
            observed = Observed(0, 0, int(busy), int(busy), last_activity=last_activity)
        decision = decide(scaling, observed, history, now, TUNABLES)
        history, replicas = decision.history, decision.target
        if replicas == 0 and at_min_since is None:
            at_min_since = now
        if now < last_request_done + scaling.timeout_s:
            assert replicas == 1, f"scaled to {replicas} at {now - T0:.0f} s"
    assert at_min_since is not None
    assert last_request_done + scaling.timeout_s <= at_min_since <= last_request_done + scaling.timeout_s + 1


# --- properties ------------------------------------------------------------------------------------------------


@st.composite
def specs(draw: st.DrawFn) -> ScalingSpec:
    maximum = draw(st.integers(1, 40))
    desired = draw(st.integers(0, maximum))
    minimum = draw(st.integers(0, desired))
    timeout = draw(st.integers(1, 3600))
    target = draw(st.sampled_from([0.5, 1.0, 2.0, 4.0, 8.0, 100.0]) | st.floats(0.01, 1000.0))
    return ScalingSpec(min=minimum, desired=desired, max=maximum, timeout_s=float(timeout), target_per_replica=target)


@st.composite
def observations(draw: st.DrawFn) -> Observed:
    replicas = draw(st.integers(0, 60))  # above max too: max may have been lowered
    ready = draw(st.integers(0, replicas))
    outstanding = draw(st.just(0) | st.integers(0, 500))  # no demand at all is common: idleness matters
    held = draw(st.integers(0, outstanding))
    busy = draw(st.just(0) | st.integers(0, 500))
    last = draw(st.none() | st.floats(-7200.0, 5.0).map(lambda offset: T0 + offset))
    created = draw(st.none() | st.floats(-7200.0, 0.0).map(lambda offset: T0 + offset))
    return Observed(replicas, ready, outstanding, held, busy, last, created)


@st.composite
def histories(draw: st.DrawFn) -> History:
    since = T0 - draw(st.floats(0.0, 200.0))
    offsets = draw(st.lists(st.floats(0.0, 100.0), max_size=40))
    recommendations = tuple(sorted((T0 - offset, draw(st.integers(0, 60))) for offset in offsets))
    last_scale = draw(st.none() | st.floats(0.0, 100.0).map(lambda offset: T0 - offset))
    return History(since=since, recommendations=recommendations, last_scale=last_scale)


@settings(max_examples=400)
@given(specs(), observations(), histories())
def test_property_decisions_keep_every_bound(scaling: ScalingSpec, observed: Observed, history: History) -> None:
    decision = decide(scaling, observed, history, T0, TUNABLES)
    target, replicas = decision.target, observed.replicas
    assert 0 <= target <= scaling.max
    assert target >= scaling.min
    active = is_active(observed, scaling, T0)
    needed = recommendation_of(scaling, observed, T0)
    if not active and still_starting(scaling, observed, T0):
        assert target == min(replicas, scaling.max)  # pods still starting are not torn down
    elif not active:
        assert (target, decision.reason) == (scaling.min, "Idle" if target != replicas else "Steady")
    else:
        assert target >= floor_of(scaling, observed, T0) >= scaling.desired
    if recently_requested(observed, scaling, T0):
        assert target >= 1
    if active and replicas == 0 and demand(observed) > 0:
        assert target == needed >= 1
    if active and observed.ready == 0 and replicas <= scaling.max:
        assert target == max(needed, replicas)  # up at once, never down while cold
    if active and observed.ready > 0 and replicas <= scaling.max and needed > replicas:
        assert (target, decision.reason) == (needed, "QueueDepth")
    if active and replicas <= scaling.max and target < replicas:
        assert decision.reason == "LowerLoad"
        assert T0 - history.since >= TUNABLES.stabilization_s
        assert history.last_scale is None or T0 - history.last_scale >= TUNABLES.down_step_s
        assert target >= math.ceil(replicas / 2)
        in_window = [r for t, r in history.recommendations if t >= T0 - TUNABLES.stabilization_s]
        assert target >= max([*in_window, needed])
    # The history remembers a change (for the down step) and forgets what left the window.
    if target != replicas:
        assert decision.history.last_scale == T0
    else:
        assert decision.history.last_scale == history.last_scale
    assert all(t >= T0 - TUNABLES.stabilization_s for t, _ in decision.history.recommendations)
    assert decision.history.since == history.since


@dataclass
class Tick:
    seconds: float  # since the previous tick
    held: int
    in_flight: int


@dataclass
class Run:
    """A simulated cluster: the Deployment follows the target, pods turn ready ``start_s`` after being added."""

    scaling: ScalingSpec
    start_s: float
    history: History
    now: float = T0
    replicas: int = 0
    started: list[float] = field(default_factory=list)  # when each current pod was added
    last_activity: float | None = None
    decisions: list[tuple[float, Observed, Decision]] = field(default_factory=list)

    def step(self, tick: Tick) -> None:
        self.now += tick.seconds
        if tick.held or tick.in_flight:
            self.last_activity = self.now
        ready = sum(1 for added in self.started if self.now - added >= self.start_s)
        in_flight = tick.in_flight if ready else 0
        observed = Observed(
            replicas=self.replicas,
            ready=ready,
            gateway_outstanding=tick.held + in_flight,
            gateway_held=tick.held,
            last_activity=self.last_activity,
        )
        decision = decide(self.scaling, observed, self.history, self.now, TUNABLES)
        self.decisions.append((self.now, observed, decision))
        self.history = decision.history
        if decision.target > self.replicas:
            self.started += [self.now] * (decision.target - self.replicas)
        else:
            del self.started[decision.target :]  # the newest pods leave first
        self.replicas = decision.target


ticks = st.lists(
    st.builds(Tick, st.sampled_from([0.5, 1.0, 1.0, 1.0, 2.0, 7.0]), st.integers(0, 60), st.integers(0, 60)),
    min_size=1,
    max_size=150,
)


@given(specs(), st.sampled_from([0.0, 1.0, 5.0, 60.0]), ticks, st.floats(0.0, 100.0))
def test_property_a_run_of_ticks_scales_down_only_slowly(
    scaling: ScalingSpec, start_s: float, load: list[Tick], observed_for: float
) -> None:
    run = Run(scaling, start_s, History(since=T0 - observed_for), last_activity=T0)
    for tick in load:
        run.step(tick)
    previous_change: float | None = None
    replicas = 0
    for index, (now, observed, decision) in enumerate(run.decisions):
        assert decision.target <= scaling.max
        active = is_active(observed, scaling, now)
        if decision.target < replicas and active:
            # Down only after a whole window of observation, a step after the last change, half at most,
            # and never below what any observation of the window needed.
            assert now - (T0 - observed_for) >= TUNABLES.stabilization_s
            assert previous_change is None or now - previous_change >= TUNABLES.down_step_s
            assert decision.target >= math.ceil(replicas / 2)
            window = [
                recommendation_of(scaling, seen, at)
                for at, seen, _ in run.decisions[: index + 1]
                if at >= now - TUNABLES.stabilization_s and is_active(seen, scaling, at)
            ]
            assert decision.target >= max(window)
        if active:
            assert decision.target >= floor_of(scaling, observed, now)
        if decision.target != replicas:
            previous_change = now
        replicas = decision.target


@given(specs(), st.lists(st.tuples(st.integers(0, 200), st.integers(0, 200)), min_size=1, max_size=60))
def test_property_a_restarted_autoscaler_never_shrinks_a_busy_cluster_within_its_first_window(
    scaling: ScalingSpec, load: list[tuple[int, int]]
) -> None:
    replicas = scaling.max  # the cluster was scaled out before the restart
    history = History(since=T0, last_scale=T0 - 3600)
    for second, (held, in_flight) in enumerate(load[:30]):
        now = T0 + second
        observed = warm(replicas, outstanding=held + in_flight, held=held, last=now)
        decision = decide(scaling, observed, history, now, TUNABLES)
        assert decision.target >= replicas
        history, replicas = decision.history, decision.target


# --- signals ---------------------------------------------------------------------------------------------------


def gateway_text() -> tuple[str, Demand]:
    """Real ``/metrics`` of a gateway: two models, one with held and in-flight requests, one finished."""
    metrics = GatewayMetrics()
    gateway = Demand(metrics)
    busy, done = ("team-a", "minilm"), ("team-b", "gpt2")
    for _ in range(5):
        gateway.start(busy)
    gateway.hold(busy, 3)
    gateway.start(done)
    gateway.finish(done)
    gateway.observe_latency(done, 0.25)
    metrics.wakes.labels(*busy).inc()
    metrics.route_children("/models/v2/{model}", 200)[0].inc()
    return metrics.render().decode(), gateway


def test_parse_gateway_reads_the_gateways_own_output() -> None:
    text, gateway = gateway_text()
    assert 'modelcluster_gateway_outstanding_requests{model="minilm",namespace="team-a"} 5.0' in text
    found = parse_gateway(text)
    assert set(found) == {("team-a", "minilm"), ("team-b", "gpt2")}
    busy, done = found[("team-a", "minilm")], found[("team-b", "gpt2")]
    assert (busy.outstanding, busy.held) == (5, 3)
    assert busy.last_request == gateway.of(("team-a", "minilm")).last_activity > 0
    assert (done.outstanding, done.held) == (0, 0)
    assert done.last_request == gateway.of(("team-b", "gpt2")).last_activity


def test_parse_gateway_takes_labels_in_any_order_with_escapes_and_a_timestamp() -> None:
    text = "\n".join(
        [
            'modelcluster_gateway_outstanding_requests{namespace="ns",model="m",pod="gw-1"} 7 1700000000000',
            'modelcluster_gateway_held_requests{model="m",namespace="ns"} 2',
            'modelcluster_gateway_outstanding_requests{model="we\\"ird",namespace="ns"} 1',
        ]
    )
    found = parse_gateway(text)
    assert (found[("ns", "m")].outstanding, found[("ns", "m")].held) == (7, 2)
    assert found[("ns", 'we\\"ird')].outstanding == 1


def test_parse_gateway_ignores_garbage_and_reads_nan_inf_and_negatives_as_zero() -> None:
    text = "\n".join(
        [
            "garbage line",
            "{}",
            "",
            "modelcluster_gateway_outstanding_requests 4",  # no labels: whose?
            'modelcluster_gateway_outstanding_requests{model="m"} 4',  # no namespace
            'modelcluster_gateway_outstanding_requests{namespace="ns",model="a"} NaN',
            'modelcluster_gateway_held_requests{namespace="ns",model="a"} +Inf',
            'modelcluster_gateway_last_request_timestamp_seconds{namespace="ns",model="a"} -Inf',
            'modelcluster_gateway_outstanding_requests{namespace="ns",model="b"} -3',
            'modelcluster_gateway_held_requests{namespace="ns",model="b"} twelve',
            'modelcluster_gateway_outstanding_requests{namespace="ns",model="c"} 1e400',
            'modelcluster_gateway_requests_total{namespace="ns",model="c"} 99',  # not a demand series
        ]
    )
    found = parse_gateway(text)
    assert found == {
        ("ns", "a"): ModelSignal(0, 0, 0.0),
        ("ns", "b"): ModelSignal(0, 0, 0.0),
        ("ns", "c"): ModelSignal(0, 0, 0.0),
    }


def test_parse_runtime_reads_the_runtimes_own_output() -> None:
    metrics = RuntimeMetrics("feature-extraction", "sentence-transformers/all-MiniLM-L6-v2")
    metrics.queue_depth.set(3)
    metrics.in_flight.set(2)
    before = time.time()
    metrics.touch()
    after = time.time()
    metrics.model_load_seconds.set(4.5)
    metrics.stage_seconds.labels(stage="total").observe(0.1)
    text = metrics.render().decode()
    signal = parse_runtime(text)
    assert signal.busy == 5
    assert before <= signal.last_request <= after


def test_parse_runtime_of_a_fresh_or_broken_pod_is_zero() -> None:
    fresh = parse_runtime(RuntimeMetrics("text-generation", "gpt2").render().decode())
    assert (fresh.busy, fresh.last_request) == (0, 0.0)
    broken = parse_runtime(
        "modelcluster_runtime_queue_depth NaN\nmodelcluster_runtime_in_flight_requests +Inf\n"
        "modelcluster_runtime_last_request_timestamp_seconds nope\n<html>oops</html>\n"
    )
    assert (broken.busy, broken.last_request) == (0, 0.0)


def test_sum_gateways_adds_counts_keeps_the_latest_time_and_leaves_the_reports_alone() -> None:
    a = {("ns", "m"): ModelSignal(4, 1, 100.0), ("ns", "only-a"): ModelSignal(1, 1, 50.0)}
    b = {("ns", "m"): ModelSignal(6, 2, 90.0)}
    total = sum_gateways([a, b])
    assert total == {("ns", "m"): ModelSignal(10, 3, 100.0), ("ns", "only-a"): ModelSignal(1, 1, 50.0)}
    # The autoscaler keeps each gateway's last report and sums them again every tick.
    assert sum_gateways([a, b]) == total
    assert a[("ns", "m")] == ModelSignal(4, 1, 100.0) and b[("ns", "m")] == ModelSignal(6, 2, 90.0)
    assert sum_gateways([]) == {}


@given(
    st.lists(
        st.dictionaries(
            st.tuples(st.sampled_from(["a", "b"]), st.sampled_from(["x", "y", "z"])),
            st.builds(ModelSignal, st.integers(0, 1000), st.integers(0, 1000), st.floats(0, 2e9)),
            max_size=6,
        ),
        max_size=5,
    )
)
def test_property_sum_gateways(reports: list[dict[tuple[str, str], ModelSignal]]) -> None:
    total = sum_gateways(reports)
    assert set(total) == {key for report in reports for key in report}
    for key, signal in total.items():
        parts = [report[key] for report in reports if key in report]
        assert signal.outstanding == sum(p.outstanding for p in parts)
        assert signal.held == sum(p.held for p in parts)
        assert signal.last_request == max(p.last_request for p in parts)


def test_pods_still_starting_are_not_torn_down_when_the_timeout_passes() -> None:
    from modelcluster.operator.autoscaling.policy import History, Observed, ScalingSpec, decide

    spec = ScalingSpec(min=0, desired=1, max=2, timeout_s=60, target_per_replica=1)
    starting = Observed(replicas=1, ready=0, created_at=0.0)
    assert decide(spec, starting, History(since=0.0), now=120.0).target == 1
    assert decide(spec, Observed(replicas=1, ready=1, created_at=0.0), History(since=0.0), now=120.0).target == 0
    # A start that never finishes is given up after the grace period.
    assert decide(spec, starting, History(since=0.0), now=60.0 + 901.0).target == 0


def test_a_lowered_max_applies_at_once() -> None:
    from modelcluster.operator.autoscaling.policy import History, Observed, ScalingSpec, decide

    spec = ScalingSpec(min=1, desired=1, max=1, timeout_s=600, target_per_replica=1)
    busy = Observed(replicas=2, ready=2, gateway_outstanding=4, last_activity=99.0, created_at=0.0)
    decision = decide(spec, busy, History(since=99.0, recommendations=((98.0, 2),)), now=100.0)
    assert (decision.target, decision.reason) == (1, "MaxLowered")


def test_gateways_are_scraped_on_the_port_named_metrics_of_their_endpoint_slices() -> None:
    both = {"ports": [{"name": "http", "port": 8080}, {"name": "metrics", "port": 9183}]}
    assert metrics_port_of(both, 8083) == 9183
    # A Service that names no metrics port (an older chart, the API Service): the gateway's default metrics port.
    assert metrics_port_of({"ports": [{"name": "http", "port": 8080}]}, 8083) == 8083
    assert metrics_port_of({}, 8083) == 8083
