"""The one central autoscaler: a single asyncio task that ticks about once a second.

Each tick it scrapes the gateways' demand (summed over gateway replicas) and the runtime
pods' queues, concurrency-limited and with short timeouts, runs the pure policy
(:mod:`.scaling`) for every cluster, and server-side applies ``spec.replicas`` under its own
field manager, only when the target changes. It is the only writer of that field after
creation. The idle clock and the last scale time live in the ModelCluster status, so a
restarted operator neither tears down a busy cluster nor wakes an idle one. A wake written by
the gateway triggers a tick at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp

from modelcluster.api import ModelClusterSpec, field_managers
from modelcluster.api.modelcluster import WAKE_ANNOTATION
from modelcluster.api.pod_auth import CredentialIssuer
from modelcluster.catalog import Catalog, CatalogError, resolve
from modelcluster.kube.client import MERGE_OPTIONS, Kube, KubeError
from modelcluster.kube.objects import ClusterKey, metadata_of, rfc3339_from_timestamp
from modelcluster.operator.autoscaling.config import AutoscalerConfig
from modelcluster.operator.autoscaling.policy import History, Observed, ScalingSpec, decide, demand
from modelcluster.operator.autoscaling.signals import ModelSignal, PodSignal, parse_gateway, parse_runtime, sum_gateways
from modelcluster.operator.builders.events import build_event
from modelcluster.operator.builders.ownership import owns
from modelcluster.operator.builders.replicas import REPLICAS_FIELD_MANAGER, build_replicas_apply
from modelcluster.operator.builders.status import cold_start_times, parse_time
from modelcluster.operator.controller.store import Store
from modelcluster.operator.metrics import ReconcileMetrics

logger = logging.getLogger(__name__)

Body = dict[str, Any]
STATUS_FIELD_MANAGER = field_managers.AUTOSCALER
DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
EVENT_INTERVAL_S = 10.0
STATUS_INTERVAL_S = 5.0
#: The port of the gateway's metrics Service (and so of its EndpointSlices) that serves /metrics.
GATEWAY_METRICS_PORT_NAME = "metrics"
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
    last_request: str | None = None
    queue_depth: int | None = None


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
        self._gateway_reports: dict[str, tuple[float, dict[ClusterKey, ModelSignal]]] = {}
        self._written: dict[ClusterKey, _Written] = {}
        self._events: dict[ClusterKey, float] = {}
        self._poke = asyncio.Event()
        self._session: aiohttp.ClientSession | None = None

    def poke(self) -> None:
        """Tick now (a wake arrived)."""
        self._poke.set()

    def _pod_changed(self, key: ClusterKey, new: Body | None, old: Body | None) -> None:
        """A pod that just turned ready: its cold start, phase by phase, into the histogram."""
        if self.metrics is None or new is None or not pod_ready(new) or (old is not None and pod_ready(old)):
            return
        times = cold_start_times(new)
        steps = (("scheduled", "created", "PodScheduled"), ("started", "PodScheduled", "ContainerStarted"),
                 ("loaded", "ContainerStarted", "ModelLoaded"), ("total", "created", "ModelLoaded"))  # fmt: skip
        for phase, start, end in steps:
            begin, finish = times[start], times[end]
            if begin is not None and finish is not None:
                self.metrics.cold_start.labels(phase=phase).observe(max(0.0, (finish - begin).total_seconds()))

    def _cluster_changed(self, key: ClusterKey, new: Body | None, old: Body | None) -> None:
        if new is not None and _wake_of(new) != _wake_of(old):
            self.poke()

    async def run(self) -> None:
        """Once the store has synced, tick until cancelled."""
        timeout = aiohttp.ClientTimeout(total=self.config.scrape_timeout_s)
        connector = aiohttp.TCPConnector(limit=self.config.scrape_concurrency)
        self._session = aiohttp.ClientSession(timeout=timeout, connector=connector)
        try:
            await self.store.synced.wait()
            logger.info("autoscaler running (tick %.1fs)", self.config.tick_s)
            while True:
                started = time.monotonic()
                self._poke.clear()
                try:
                    await self.tick(time.time())
                except (KubeError, aiohttp.ClientError, ValueError, KeyError, TypeError):
                    # One bad tick (an odd object, a failed call) must not end scaling for every cluster.
                    logger.exception("autoscaler tick failed; the next tick tries again")
                if self.metrics is not None:
                    self.metrics.autoscaler_tick.observe(time.monotonic() - started)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self._poke.wait(), max(0.0, self.config.tick_s - (time.monotonic() - started))
                    )
        finally:
            await self._session.close()

    async def tick(self, now: float) -> None:
        gateway = await self._gateway_demand(now)
        runtime = await self._runtime_demand()
        work = []
        for key, group in list(self.clusters.items.items()):
            body = next(iter(group.values()))
            if metadata_of(body).get("deletionTimestamp"):
                continue
            step = self.step(key, body, gateway.get(key), runtime.get(key, {}), now)
            if step is not None:
                work.append(step)
        if work:
            await asyncio.gather(*work)
        for key in set(self.histories) - set(self.clusters.items):
            self.histories.pop(key, None)
            self._written.pop(key, None)
            self._events.pop(key, None)

    def step(
        self, key: ClusterKey, body: Body, gateway: ModelSignal | None, pods: dict[str, PodSignal], now: float
    ) -> Any | None:
        """Decide for one cluster; the coroutine doing its writes, or None when nothing changes."""
        # Only the cluster's own Deployment, of its name: never scale an object the operator did not create.
        deployment = self.deployments.named(key, key[1])
        if deployment is None or not owns(body, deployment):
            return None
        try:
            spec = ModelClusterSpec.model_validate(body.get("spec") or {})
        except ValueError:
            return None
        status = body.get("status") or {}
        metadata = metadata_of(body)
        replicas = int((deployment.get("spec") or {}).get("replicas") or 0)
        ready = int((deployment.get("status") or {}).get("readyReplicas") or 0)
        activity = [
            _timestamp(status.get("lastRequestTime")),
            _timestamp((metadata.get("annotations") or {}).get(WAKE_ANNOTATION)),
            gateway.last_request if gateway else None,
            *(pod.last_request for pod in pods.values()),
        ]
        last = max((a for a in activity if a), default=None)
        observed = Observed(
            replicas=replicas,
            ready=ready,
            gateway_outstanding=gateway.outstanding if gateway else 0,
            gateway_held=gateway.held if gateway else 0,
            runtime_busy=sum(pod.busy for pod in pods.values()),
            last_activity=last,
            created_at=_timestamp(metadata.get("creationTimestamp")),
        )
        history = self.histories.get(key) or History(since=now, last_scale=_timestamp(status.get("lastScaleTime")))
        decision = decide(self._scaling_spec(spec), observed, history, now, self.config.tunables)
        self.histories[key] = decision.history
        scale = decision.target != replicas
        depth = demand(observed)
        # After a restart, what the status already says counts as written: nothing is applied again.
        written = self._written.setdefault(
            key, _Written(last_request=status.get("lastRequestTime"), queue_depth=status.get("queueDepth"))
        )
        last_iso = _iso(last) if last else None
        status_due = scale or (
            now - written.at >= STATUS_INTERVAL_S and (last_iso != written.last_request or depth != written.queue_depth)
        )
        if not scale and not status_due:
            return None
        return self._write(key, body, replicas, decision.target, decision.reason, last_iso, depth, scale, now, pods)

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
        last_iso: str | None,
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
            if last_iso is not None:
                status["lastRequestTime"] = last_iso
            if scale:
                status["lastScaleTime"] = _iso(now)
            await self.kube.apply_cluster_status(namespace, name, status, STATUS_FIELD_MANAGER)
            self._written[key] = _Written(at=now, last_request=last_iso, queue_depth=depth)
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

    async def _get(self, url: str, target: str, headers: Mapping[str, str] | None = None) -> str | None:
        assert self._session is not None
        result, text = "failed", None
        try:
            async with self._session.get(url, headers=headers) as response:
                if response.status == 200:
                    result, text = "ok", await response.text()
                elif response.status in (401, 403):
                    result = "refused"
        except (TimeoutError, aiohttp.ClientError):
            pass
        if self.metrics is not None:
            self.metrics.autoscaler_scrapes.labels(target=target, result=result).inc()
        return text

    async def _gateway_urls(self) -> list[str]:
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
        return urls

    async def _gateway_demand(self, now: float) -> dict[ClusterKey, ModelSignal]:
        urls = await self._gateway_urls()
        texts = await asyncio.gather(*(self._get(url, "gateway") for url in urls))
        for url, text in zip(urls, texts, strict=True):
            if text is not None:
                self._gateway_reports[url] = (now, parse_gateway(text))
        # An unreachable gateway counts with its last-known report for a while, then not at all.
        fresh = [
            report for url, (seen, report) in self._gateway_reports.items() if now - seen < self.config.gateway_stale_s
        ]
        self._gateway_reports = {
            url: value for url, value in self._gateway_reports.items() if now - value[0] < self.config.gateway_stale_s
        }
        return sum_gateways(fresh)

    async def _runtime_demand(self) -> dict[ClusterKey, dict[str, PodSignal]]:
        targets: list[tuple[ClusterKey, str, str, dict[str, str]]] = []
        for key, group in self.pods.items.items():
            headers = self._credential(key)
            if headers is None:
                continue  # no cluster to sign for (being deleted): its pods would refuse the scrape
            for name, pod in group.items():
                address = (pod.get("status") or {}).get("podIP")
                if address and pod_ready(pod):
                    targets.append((key, name, f"http://{address}:{self.config.runtime_port}/metrics", headers))
        texts = await asyncio.gather(*(self._get(url, "runtime", headers) for _, _, url, headers in targets))
        found: dict[ClusterKey, dict[str, PodSignal]] = {}
        for (key, name, _, _), text in zip(targets, texts, strict=True):
            if text is not None:
                found.setdefault(key, {})[name] = parse_runtime(text)
        return found

    def _credential(self, key: ClusterKey) -> dict[str, str] | None:
        """The header presenting cluster ``key``'s pod credential ({} without an issuer); None for no cluster."""
        if self.credentials is None:
            return {}
        uid = metadata_of(self.clusters.named(key, key[1]) or {}).get("uid")
        if not uid:
            return None
        return self.credentials.headers(key[0], key[1], str(uid))

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
