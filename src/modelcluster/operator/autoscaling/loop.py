"""The one central autoscaler: a single asyncio task that ticks about once a second.

Demand is pushed, not scraped: every gateway and every ready runtime pod publishes its
per-cluster demand on a long-polled feed (:mod:`modelcluster.api.demand`) that answers only what
changed; :mod:`.subscriptions` mirrors them here. A rise in a cluster's demand decides for that
cluster at once; the tick runs the pure policy (:mod:`.policy`) for every cluster, for what time
alone decides (idle teardown, slow scale-down), and server-side applies ``spec.replicas`` under
its own field manager, only when the target changes: its first forced apply takes the field over
from the operator, which set it in the apply that created the Deployment. The idle clock and the
last scale time live in the ModelCluster status (the clock written at most once a minute while a
cluster is busy), so a restarted operator neither tears down a busy cluster nor wakes an idle one.
A wake written by the gateway decides at once too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from modelcluster.api import ModelClusterSpec, field_managers
from modelcluster.api.demand import demand_url
from modelcluster.api.modelcluster import WAKE_ANNOTATION
from modelcluster.api.pod_auth import CredentialIssuer
from modelcluster.catalog import Catalog, CatalogError, resolve
from modelcluster.kube.client import MERGE_OPTIONS, Kube, KubeError
from modelcluster.kube.objects import ClusterKey, metadata_of, rfc3339_from_timestamp
from modelcluster.operator.autoscaling.config import AutoscalerConfig
from modelcluster.operator.autoscaling.policy import History, Observed, ScalingSpec, decide, demand
from modelcluster.operator.autoscaling.signals import ModelSignal, PodSignal
from modelcluster.operator.autoscaling.subscriptions import Subscription, Subscriptions
from modelcluster.operator.builders.events import build_event
from modelcluster.operator.builders.ownership import owns
from modelcluster.operator.builders.replicas import REPLICAS_FIELD_MANAGER, build_replicas_apply
from modelcluster.operator.builders.standby_status import wake_path_times
from modelcluster.operator.builders.status import parse_time
from modelcluster.operator.controller.store import Store
from modelcluster.operator.metrics import ReconcileMetrics

logger = logging.getLogger(__name__)

Body = dict[str, Any]
STATUS_FIELD_MANAGER = field_managers.AUTOSCALER
DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
EVENT_INTERVAL_S = 10.0
#: How often a busy cluster's status may change for the demand alone: ``lastRequestTime`` (the idle clock, kept
#: exact in memory and in the gateways) and ``queueDepth`` are written at most once per interval, and with every
#: scale decision; a cluster quiet for a whole interval gets its exact clock written once.
STATUS_INTERVAL_S = 60.0
#: The port of the gateway's metrics Service (and so of its EndpointSlices) that serves /metrics and /demand.
GATEWAY_METRICS_PORT_NAME = "metrics"
#: How often the gateways behind ``--gateway-service`` are listed again.
GATEWAY_REFRESH_S = 5.0
#: Outstanding requests one replica should carry, by task family, unless the spec says otherwise.
DEFAULT_TARGETS = {"llm": 1.0, "text": 8.0, "vision": 2.0, "audio": 2.0, "diffusion": 1.0}


def _wake_of(body: Mapping[str, Any] | None) -> Any:
    return (((body or {}).get("metadata") or {}).get("annotations") or {}).get(WAKE_ANNOTATION)


def _timestamp(value: Any) -> float | None:
    parsed = parse_time(value)
    return parsed.timestamp() if parsed is not None else None


def _iso(stamp: float) -> str:
    return rfc3339_from_timestamp(stamp)


def metrics_port_of(endpoint_slice: Mapping[str, Any], default: int) -> int:
    """The port named ``metrics`` of a gateway metrics Service's EndpointSlice, else ``default``."""
    for port in endpoint_slice.get("ports") or []:
        if port.get("name") == GATEWAY_METRICS_PORT_NAME and isinstance(port.get("port"), int):
            return int(port["port"])
    return default


def pod_ready(pod: Mapping[str, Any]) -> bool:
    if metadata_of(pod).get("deletionTimestamp"):
        return False
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


@dataclass
class _Written:
    at: float = 0.0
    last_request: float | None = None  # unix time, as written (seconds with fractions)
    queue_depth: int | None = None


@dataclass(frozen=True)
class _View:
    """One cluster as its current objects say (parsed once per object version)."""

    body: Body
    deployment: Body
    owned: bool
    scaling: ScalingSpec | None
    status_last: float | None
    wake: float | None
    created: float | None
    last_scale: float | None
    depth: int | None


def status_write_due(written: _Written, last: float | None, depth: int, now: float) -> bool:
    """Whether the demand alone warrants a status write: a missing ``queueDepth`` at once once the cluster has had a
    request (or a wake; a cluster never asked for has nothing to record), else a changed clock or depth at most once
    per :data:`STATUS_INTERVAL_S` (scale decisions write regardless)."""
    if written.queue_depth is None:
        return depth > 0 or last is not None
    changed = depth != written.queue_depth or (last is not None and last != written.last_request)
    return changed and now - written.at >= STATUS_INTERVAL_S


class Autoscaler:
    def __init__(
        self,
        kube: Kube,
        catalog: Catalog,
        config: AutoscalerConfig,
        store: Store,
        metrics: ReconcileMetrics | None = None,
        *,
        credentials: CredentialIssuer | None = None,
    ) -> None:
        self.kube = kube
        self.credentials = credentials
        self.catalog = catalog
        self.config = config
        self.metrics = metrics
        self.store = store
        self.clusters = store.clusters
        self.deployments = store.deployments
        self.pods = store.pods
        self.clusters.subscribe(self._cluster_changed)
        self.pods.subscribe(self._pod_changed)
        self.histories: dict[ClusterKey, History] = {}
        self._written: dict[ClusterKey, _Written] = {}
        self._events: dict[ClusterKey, float] = {}
        self._views: dict[ClusterKey, _View] = {}
        self._poke = asyncio.Event()
        self._urgent: set[ClusterKey] = set()
        self._whole = False
        self.gateway_feeds = Subscriptions(
            config.push_interval_s, config.gateway_stale_s, self._demand_rose, on_poll=self._counter("gateway")
        )
        self.pod_feeds = Subscriptions(
            config.tick_s, config.gateway_stale_s, self._demand_rose, on_poll=self._counter("runtime")
        )
        self._pods_changed = True
        self._gateways_listed: tuple[float, list[str]] | None = None
        self._first_decision: float | None = None
        self._demand_known = False

    def poke(self, keys: set[ClusterKey] | None = None) -> None:
        """Decide now: for ``keys`` (their demand rose, a wake arrived), or a whole tick when None."""
        if keys is None:
            self._urgent.clear()
            self._whole = True
        else:
            self._urgent |= keys
        self._poke.set()

    def _demand_rose(self, keys: set[ClusterKey]) -> None:
        self.poke(keys)

    def _pod_changed(self, key: ClusterKey, new: Body | None, old: Body | None) -> None:
        """A pod that just turned ready: its cold start, phase by phase, into the histogram."""
        self._pods_changed = True
        if self.metrics is None or new is None or not pod_ready(new) or (old is not None and pod_ready(old)):
            return
        path, times, steps = wake_path_times(new)
        for phase, start, end in steps:
            begin, finish = times.get(start), times.get(end)
            if begin is not None and finish is not None:
                seconds = max(0.0, (finish - begin).total_seconds())
                self.metrics.cold_start.labels(path=path, phase=phase).observe(seconds)

    def _cluster_changed(self, key: ClusterKey, new: Body | None, old: Body | None) -> None:
        if new is not None and _wake_of(new) != _wake_of(old):
            self.poke({key})

    async def run(self) -> None:
        """Once the store has synced, tick until cancelled; between ticks, decide at once where demand rose."""
        try:
            await self.store.synced.wait()
            logger.info("autoscaler running (tick %.1fs, demand pushed)", self.config.tick_s)
            next_tick = time.monotonic()
            while True:
                started = time.monotonic()
                self._poke.clear()
                whole = started >= next_tick or self._whole
                try:
                    if whole:
                        self._whole = False
                        self._urgent.clear()
                        await self.tick(time.time())
                    else:
                        keys, self._urgent = self._urgent, set()
                        await self.decide_for(keys, time.time())
                except (KubeError, ValueError, KeyError, TypeError):
                    # One bad tick (an odd object, a failed call) must not end scaling for every cluster.
                    logger.exception("autoscaler tick failed; the next tick tries again")
                if whole:
                    next_tick = started + self.config.tick_s
                    if self.metrics is not None:
                        self.metrics.autoscaler_tick.observe(time.monotonic() - started)
                if self._urgent or self._whole:
                    continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._poke.wait(), max(0.0, next_tick - time.monotonic()))
        finally:
            await self.gateway_feeds.close()
            await self.pod_feeds.close()

    async def follow_publishers(self, now: float) -> None:
        """Subscribe to the gateways' and the ready pods' demand feeds (new ones), drop those gone."""
        self.gateway_feeds.sync((Subscription(demand_url(url)) for url in await self._gateway_urls(now)), now)
        if self._pods_changed:
            self._pods_changed = False
            self.pod_feeds.sync(self._pod_publishers(), now)

    def _pod_publishers(self) -> list[Subscription]:
        found = []
        for key, group in self.pods.items.items():
            headers = self._credential(key)
            if headers is None:
                continue  # no cluster to sign for (being deleted): its pods would refuse the poll
            for name, pod in group.items():
                address = (pod.get("status") or {}).get("podIP")
                if address and pod_ready(pod):
                    url = demand_url(f"http://{address}:{self.config.runtime_port}")
                    found.append(Subscription(url, key, name, headers=headers))
        return found

    def _credential(self, key: ClusterKey) -> dict[str, str] | None:
        """The header presenting cluster ``key``'s pod credential ({} without an issuer); None for no cluster."""
        if self.credentials is None:
            return {}
        uid = metadata_of(self.clusters.named(key, key[1]) or {}).get("uid")
        if not uid:
            return None
        return self.credentials.headers(key[0], key[1], str(uid))

    def _counter(self, target: str) -> Callable[[str], None]:
        """Counts the polls of ``target``'s demand feeds by result (``modelcluster_autoscaler_scrapes_total``)."""

        def count(result: str) -> None:
            if self.metrics is not None:
                self.metrics.autoscaler_scrapes.labels(target=target, result=result).inc()

        return count

    def demand_known(self, now: float) -> bool:
        """Whether demand is known: every gateway feed followed has answered once since the start (or none is
        followed), or the feeds' staleness limit has passed since the first decision. Once known, it stays so."""
        if self._demand_known:
            return True
        if self._first_decision is None:
            self._first_decision = now
        answered = all(sub.seen is not None for sub in self.gateway_feeds.items.values())
        if answered or now - self._first_decision >= self.config.gateway_stale_s:
            self._demand_known = True
            logger.info("demand known (%s): clusters may be scaled down", "feeds answered" if answered else "timed out")
        return self._demand_known

    def gateway_demand(self, now: float) -> dict[ClusterKey, ModelSignal]:
        """The demand over all gateway replicas that answered lately: counts added, the latest request kept."""
        total: dict[ClusterKey, ModelSignal] = {}
        for sub in self.gateway_feeds.live(now):
            for key, entry in sub.entries.items():
                signal = total.get(key)
                if signal is None:
                    signal = total[key] = ModelSignal()
                signal.outstanding += entry.outstanding
                signal.held += entry.held
                signal.last_request = max(signal.last_request, entry.last_request)
        return total

    def runtime_demand(self, now: float) -> dict[ClusterKey, dict[str, PodSignal]]:
        found: dict[ClusterKey, dict[str, PodSignal]] = {}
        for sub in self.pod_feeds.live(now):
            entry = sub.entries.get(sub.cluster) if sub.cluster is not None else None
            if entry is not None and sub.cluster is not None:
                found.setdefault(sub.cluster, {})[sub.pod] = PodSignal(entry.outstanding, entry.last_request)
        return found

    async def tick(self, now: float) -> None:
        await self.follow_publishers(now)
        await self.decide_for(list(self.clusters.items), now)
        for key in set(self.histories) - set(self.clusters.items):
            self.histories.pop(key, None)
            self._written.pop(key, None)
            self._events.pop(key, None)
            self._views.pop(key, None)

    async def decide_for(self, keys: Collection[ClusterKey], now: float) -> None:
        """A decision for these clusters (all of them on a tick; between ticks, those whose demand rose or that a
        wake arrived for)."""
        gateway = self.gateway_demand(now)
        runtime = self.runtime_demand(now)
        known = self.demand_known(now)
        work = []
        for key in keys:
            group = self.clusters.items.get(key)
            if not group:
                continue
            body = next(iter(group.values()))
            if metadata_of(body).get("deletionTimestamp"):
                continue
            step = self.step(key, body, gateway.get(key), runtime.get(key, {}), now, demand_known=known)
            if step is not None:
                work.append(step)
        if work:
            await asyncio.gather(*work)

    def step(
        self,
        key: ClusterKey,
        body: Body,
        gateway: ModelSignal | None,
        pods: dict[str, PodSignal],
        now: float,
        *,
        demand_known: bool = True,
    ) -> Any | None:
        """Decide for one cluster; the coroutine doing its writes, or None when nothing changes."""
        # Only the cluster's own Deployment, of its name: never scale an object the operator did not create.
        deployment = self.deployments.named(key, key[1])
        if deployment is None:
            return None
        view = self._view_of(key, body, deployment)
        if not view.owned or view.scaling is None:
            return None
        replicas = int((deployment.get("spec") or {}).get("replicas") or 0)
        ready = int((deployment.get("status") or {}).get("readyReplicas") or 0)
        last = max(view.status_last or 0.0, view.wake or 0.0, gateway.last_request if gateway else 0.0)
        busy = 0
        for pod in pods.values():
            busy += pod.busy
            last = max(last, pod.last_request)
        observed = Observed(
            replicas=replicas,
            ready=ready,
            gateway_outstanding=gateway.outstanding if gateway else 0,
            gateway_held=gateway.held if gateway else 0,
            runtime_busy=busy,
            last_activity=last or None,
            created_at=view.created,
            demand_known=demand_known,
        )
        history = self.histories.get(key) or History(since=now, last_scale=view.last_scale)
        decision = decide(view.scaling, observed, history, now, self.config.tunables)
        self.histories[key] = decision.history
        scale = decision.target != replicas
        depth = demand(observed)
        # After a restart, what the status already says counts as written (just now): nothing is applied again, and
        # a busy cluster's clock is next written an interval later, so a new leader causes no burst of writes.
        written = self._written.get(key)
        if written is None:
            written = self._written[key] = _Written(at=now, last_request=view.status_last, queue_depth=view.depth)
        if not scale and not status_write_due(written, last or None, depth, now):
            return None
        return self._write(key, body, replicas, decision.target, decision.reason, last or None, depth, scale, now, pods)

    def _view_of(self, key: ClusterKey, body: Body, deployment: Body) -> _View:
        """What one cluster's objects say, read once per version of them (the store replaces them on change)."""
        view = self._views.get(key)
        if view is not None and view.body is body and view.deployment is deployment:
            return view
        status = body.get("status") or {}
        metadata = metadata_of(body)
        try:
            scaling: ScalingSpec | None = self._scaling_spec(ModelClusterSpec.model_validate(body.get("spec") or {}))
        except ValueError:
            scaling = None
        depth = status.get("queueDepth")
        view = self._views[key] = _View(
            body=body,
            deployment=deployment,
            owned=owns(body, deployment),
            scaling=scaling,
            status_last=_timestamp(status.get("lastRequestTime")),
            wake=_timestamp((metadata.get("annotations") or {}).get(WAKE_ANNOTATION)),
            created=_timestamp(metadata.get("creationTimestamp")),
            last_scale=_timestamp(status.get("lastScaleTime")),
            depth=depth if isinstance(depth, int) else None,
        )
        return view

    def _scaling_spec(self, spec: ModelClusterSpec) -> ScalingSpec:
        capacity = spec.capacity
        try:
            family = resolve(self.catalog, spec.model, spec.task).family
        except CatalogError:
            family = ""
        target = spec.target_per_replica or DEFAULT_TARGETS.get(family, 1.0)
        return ScalingSpec(
            min=capacity.min,
            desired=capacity.desired,
            max=capacity.effective_max,
            timeout_s=float(spec.timeout),
            target_per_replica=float(target),
        )

    async def _write(
        self,
        key: ClusterKey,
        body: Body,
        current: int,
        target: int,
        reason: str,
        last: float | None,
        depth: int,
        scale: bool,
        now: float,
        pods: dict[str, PodSignal],
    ) -> None:
        namespace, name = key
        try:
            if scale and target < current:
                await self._mark_victims(key, pods)
            if scale:
                await self.kube.apply(build_replicas_apply(name, namespace, target), REPLICAS_FIELD_MANAGER)
                logger.info("%s/%s: %d -> %d replicas (%s, queue %d)", namespace, name, current, target, reason, depth)
                if self.metrics is not None:
                    self.metrics.autoscaler_decisions.labels(reason=reason).inc()
                    self.metrics.autoscaler_target.labels(namespace=namespace, name=name).set(target)
                await self._event(key, body, current, target, reason, depth, now)
            status: Body = {"queueDepth": depth}
            if last is not None:
                status["lastRequestTime"] = _iso(last)
            if scale:
                status["lastScaleTime"] = _iso(now)
            await self.kube.apply_cluster_status(namespace, name, status, STATUS_FIELD_MANAGER)
            self._written[key] = _Written(at=now, last_request=last, queue_depth=depth)
        except KubeError as error:
            logger.warning("%s/%s: scaling to %d failed: %s", namespace, name, target, error)

    async def _event(
        self, key: ClusterKey, body: Body, current: int, target: int, reason: str, depth: int, now: float
    ) -> None:
        """A Kubernetes Event for the decision: at most one per cluster per interval, always for 0 <-> n."""
        to_or_from_zero = current == 0 or target == 0
        if not to_or_from_zero and now - self._events.get(key, 0.0) < EVENT_INTERVAL_S:
            return
        self._events[key] = now
        namespace, name = key
        verb = "ScaledUp" if target > current else ("ScaledToZero" if target == 0 else "ScaledDown")
        message = f"{current} -> {target} replicas ({reason}, {depth} outstanding requests)"
        event = build_event(body, verb, message, datetime.fromtimestamp(now, UTC), component=STATUS_FIELD_MANAGER)
        try:
            await self.kube.post_event(event)
        except KubeError as error:
            logger.debug("event for %s/%s not recorded: %s", namespace, name, error)

    async def _gateway_urls(self, now: float) -> list[str]:
        """The configured gateways and the ready endpoints of the gateway Service (listed every few seconds)."""
        if self._gateways_listed is not None and now - self._gateways_listed[0] < GATEWAY_REFRESH_S:
            return self._gateways_listed[1]
        urls = list(self.config.gateway_urls)
        if self.config.gateway_service is not None:
            namespace, name = self.config.gateway_service
            try:
                slices = await self.kube.json(
                    self.kube.discovery.list_namespaced_endpoint_slice(
                        namespace, label_selector=f"kubernetes.io/service-name={name}", _preload_content=False
                    )
                )
            except KubeError as error:
                logger.warning("finding the gateways failed: %s", error)
                slices = {}
            for slice_ in slices.get("items") or []:
                port = metrics_port_of(slice_, self.config.gateway_metrics_port)
                for endpoint in slice_.get("endpoints") or []:
                    if (endpoint.get("conditions") or {}).get("ready") is False:
                        continue
                    urls.extend(f"http://{address}:{port}/metrics" for address in endpoint.get("addresses") or [])
        self._gateways_listed = (now, urls)
        return urls

    async def _mark_victims(self, key: ClusterKey, pods: dict[str, PodSignal]) -> None:
        """Before a scale-down: pods not ready, then those with the fewest requests in flight, go first."""
        namespace, _ = key
        for name, pod in (self.pods.items.get(key) or {}).items():
            cost = str(pods[name].busy if name in pods and pod_ready(pod) else -1000)
            annotations = metadata_of(pod).get("annotations") or {}
            if annotations.get(DELETION_COST) == cost:
                continue
            patch = {"metadata": {"annotations": {DELETION_COST: cost}}}
            try:
                await self.kube.call(self.kube.core.patch_namespaced_pod(name, namespace, patch, **MERGE_OPTIONS))
            except KubeError as error:
                logger.debug("deletion cost of %s/%s not set: %s", namespace, name, error)
