"""How fast the central autoscaler reacts, tears down and wakes, and what one tick costs, in one run.

Figures and how each is taken (every time is this machine's clock when the benchmark saw the
thing happen: watch events are timestamped on arrival, so none of them has the one-second
granularity of the timestamps Kubernetes writes into objects):

- **Reaction** (``--trials``, default 20): as many ModelClusters as trials, each with one ready
  pod of a trivial server (a real process on a real pod address, answering ``POST /run`` after
  ``--react-delay`` seconds), ``targetPerReplica`` 2, max 2. Per trial, at a random point of the
  autoscaler's tick, one cluster gets a burst of ``--burst`` concurrent requests through the gateway,
  so the gateway's outstanding gauge for the model exceeds what one replica should carry. Reaction =
  from the moment that gauge went over the target to the Deployment's ``spec.replicas`` change arriving
  on a watch. The moment is taken from 20 ms polls of the gateway's ``/metrics``: the sending time of
  the last poll that did not show it yet, so the figure is at most one poll longer than the truth. The
  time from the burst being sent is printed too. Each cluster is deleted after its trial.
- **Teardown** (``--trials``, spread over ``--teardown-parallel`` clusters of the trivial server,
  ``timeout`` ``--teardown-timeout`` s, min 0): from the answer of a cluster's last request to its
  Deployment's ``spec.replicas`` 0 and to its status ``stopped``. Every round but a cluster's first
  starts from ``stopped``, so those rounds are wakes of the trivial server as well: wake-to-first-answer
  and "Ready -> first held answer" without any model load are printed for them.
- **Wake-to-first-answer** (``--wake-trials``, default 5, after one warm-up wake that is not counted)
  for ``sentence-transformers/all-MiniLM-L6-v2`` served by the real runtime from the offline hub cache
  (cached weights, no network): from a ``POST`` to the stopped cluster to its answer, broken into
  phases seen on watches: pod created, scheduled (``spec.nodeName``), container started (the pod
  runner's ``running`` state), runtime healthy (the benchmark polls the pod's ``/health`` every 50 ms),
  ``Ready`` condition, EndpointSlice endpoint ready, answer. The runtime's own model load time comes
  from its ``/metrics`` (``modelcluster_runtime_model_load_seconds``). "Ready -> first held answer" is
  the answer time minus the arrival of the watch event that set ``Ready``.
- **Wake with a warm standby** (``--standby-trials``, default 3; the operator keeps a ``text/asbench=1`` warm pool
  in a second tenant namespace, ``asbench-pool``, so the wakes above borrow nothing): the same ``POST`` to a
  stopped all-MiniLM-L6-v2 cluster whose pool holds a warm standby. Phases: standby claimed (the pod relabelled
  into the cluster, on the watch), named in the cluster's ``status.borrowedPod`` (on the watch: the gateway probes
  it from then on), runtime healthy (50 ms polls of the borrowed pod), answer; then the hand-over
  (the cluster's own pod Ready, the borrowed pod deleted) and the pool refilled before the next trial. Beside it,
  **T_plain** (``--plain-trials``, default 1): a fresh Python process importing torch and sentence-transformers,
  loading the same model from the same cache and encoding once (``standby_wake.py``'s). Targets: standby wake
  <= 1.5 s p50; the wake without a standby <= T_plain + 1 s (p50); first held answer <= 100 ms after the pod
  first answers ``/health`` (worst trial).
- **Tick CPU** (``--tick-clusters`` 1,000, ``--tick-ticks`` 120, ``--tick-changing`` 0.1): in a separate
  process, an ``Autoscaler`` with in-memory tables (clusters, Deployments, ``--tick-pods`` ready pods each)
  whose demand is pushed through the real feeds (``modelcluster.api.demand``) of two gateways and of every
  pod, a share of the clusters changing each simulated second, and a Kubernetes stub whose writes do
  nothing. ``time.process_time()`` around each second's work: parsing the feeds' answers, taking them into
  the subscriptions, one ``tick()``; the HTTP of the long polls is not in it. The same run counts the status
  writes made for the demand alone per active cluster per simulated minute.

Targets: reaction <= 0.5 s p95; teardown within ``timeout`` + 5 s (worst trial); first held answer
<= 100 ms after Ready (worst trial); wake-to-first-answer no more than 2 s above the model's own load
time (worst trial); tick <= 50 ms p95 at 1,000 clusters with 10 % changing per second; at most one status
write per active cluster per minute in steady state.

Everything shares the machine's cores (control plane, operator, gateway, pods, this script), so
figures taken on a busy machine vary; the load average is printed at the start and the end.

    sudo .venv/bin/python benchmarks/autoscale.py                 # as root: pods need network namespaces
    .venv/bin/python benchmarks/autoscale.py --trials 10 --wake-trials 3 --keep
    .venv/bin/python benchmarks/autoscale.py --tick-only          # only the tick measurement, no cluster
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway_overhead import (
    Processes,
    _stop_on_sigterm,
    alive,
    free_port,
    http_status,
    progress,
    test_support,
    wait_for,
)

REPO = Path(__file__).resolve().parents[1]
SCRIPT = Path(__file__).resolve()
CLUSTER_NAME = "asbench"
TENANT = "asbench"
POOL_TENANT = "asbench-pool"
WARM_POOL = "text/asbench=1"  # the tier all-MiniLM-L6-v2 gets from this run's catalog (its smallest)
KEY_NAMESPACE = "modelcluster-system"
GROUP, VERSION, PLURAL = "modelcluster.dev", "v1alpha1", "modelclusters"
POD_IMAGE = "modelcluster.dev/bench/autoscale-pod:1"
POD_PORT = 8000
REACT_PREFIX = "asbench/react-"
TEARDOWN_PREFIX = "asbench/teardown-"
BENCH_TIER = {"name": "asbench", "gpuMemoryGB": 1, "gpus": 0, "cpu": "100m", "memory": "256Mi", "cache": "1Gi"}
# A 1x1 PNG: the trivial server never reads it, the gateway only checks the body's shape.
PNG_BODY = {
    "base64": "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
}
TEXT_BODY = {"text": "wake up"}
SCALE_TICK_S = 1.0
ANSWER_TIMEOUT_S = 300.0

TARGET_REACTION_P95_S = 0.5
TARGET_TEARDOWN_SLACK_S = 5.0
TARGET_READY_TO_ANSWER_S = 0.1
TARGET_WAKE_OVER_LOAD_S = 2.0
TARGET_STANDBY_WAKE_P50_S = 1.5
TARGET_WAKE_OVER_PLAIN_S = 1.0
TARGET_HEALTHY_TO_ANSWER_S = 0.1
TARGET_TICK_P95_S = 0.05
TARGET_STATUS_WRITES_PER_CLUSTER_MINUTE = 1.0


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of a non-empty list."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


# --- the trivial pod ---------------------------------------------------------------------------------------------


def serve_pod(port: int) -> None:
    """A model pod without a model: ``/run`` answers after a delay, ``/health`` at once, runtime ``/metrics``."""
    from aiohttp import web

    from modelcluster.runtime.metrics import RuntimeMetrics

    model = os.environ.get("MODEL_ID", "")
    delay = float(os.environ.get("BENCH_REACT_DELAY_S", "3")) if model.startswith(REACT_PREFIX) else 0.0
    metrics = RuntimeMetrics(os.environ.get("TASK", "image-classification"), model)
    metrics.model_loaded.set(1)

    async def run(request: web.Request) -> web.Response:
        await request.read()
        metrics.touch()
        metrics.in_flight.inc()
        try:
            await asyncio.sleep(delay)
        finally:
            metrics.in_flight.dec()
            metrics.touch()
        return web.json_response({"error": None, "output": [{"label": "cat", "score": 1.0}]})

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"error": None, "output": "ready"})

    async def prometheus(request: web.Request) -> web.Response:
        return web.Response(body=metrics.render(), content_type="text/plain")

    app = web.Application()
    app.router.add_post("/run", run)
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", prometheus)
    web.run_app(app, host="0.0.0.0", port=port, access_log=None, print=None)


# --- watches -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    at: float  # time.time() when the event arrived here
    kind: str
    obj: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.obj["metadata"]["name"])


class Watched:
    """Every event of one kind of object in the tenant namespace, timestamped on arrival, in a thread."""

    def __init__(self, what: str, list_call: Callable[..., Any], *args: Any) -> None:
        self.what = what
        self.list_call = list_call
        self.args = args
        self.events: list[Seen] = []
        self.latest: dict[str, dict[str, Any]] = {}
        self.condition = threading.Condition()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"watch-{what}", daemon=True)

    def start(self) -> Watched:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()

    def _run(self) -> None:
        import urllib3
        from kubernetes import watch
        from kubernetes.client.exceptions import ApiException

        version: str | None = None
        while not self.stopping.is_set():
            stream = watch.Watch()
            try:
                for event in stream.stream(self.list_call, *self.args, resource_version=version, timeout_seconds=30):
                    at = time.time()
                    obj = event["raw_object"]
                    if event["type"] == "ERROR":
                        version = None
                        break
                    version = obj["metadata"]["resourceVersion"]
                    seen = Seen(at, event["type"], obj)
                    with self.condition:
                        self.events.append(seen)
                        if seen.kind == "DELETED":
                            self.latest.pop(seen.name, None)
                        else:
                            self.latest[seen.name] = obj
                        self.condition.notify_all()
                    if self.stopping.is_set():
                        return
            except ApiException as error:
                if error.status == 410:
                    version = None
                else:
                    time.sleep(0.5)
            except (urllib3.exceptions.HTTPError, OSError):
                time.sleep(0.5)

    def first(self, match: Callable[[Seen], bool], after: float, timeout: float) -> Seen | None:
        """The first event at or after ``after`` that ``match``es, waiting up to ``timeout`` seconds for it."""
        deadline = time.monotonic() + timeout
        index = 0
        with self.condition:
            while True:
                for seen in self.events[index:]:
                    if seen.at >= after and match(seen):
                        return seen
                index = len(self.events)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self.condition.wait(remaining)

    def until(self, check: Callable[[dict[str, dict[str, Any]]], bool], timeout: float, what: str) -> None:
        """Wait until ``check`` holds for the latest objects by name (checked again at least every 0.2 s, so
        it may look at other watches too)."""
        deadline = time.monotonic() + timeout
        with self.condition:
            while not check(self.latest):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
                self.condition.wait(min(remaining, 0.2))


@dataclass
class Watches:
    deployments: Watched
    clusters: Watched
    pods: Watched
    slices: Watched

    def stop(self) -> None:
        for watched in (self.deployments, self.clusters, self.pods, self.slices):
            watched.stop()


def start_watches(kubeconfig: Path, namespace: str = TENANT) -> Watches:
    from kubernetes import client as k8s
    from kubernetes import config as k8s_config

    api = k8s_config.new_client_from_config(str(kubeconfig))
    return Watches(
        deployments=Watched("deployments", k8s.AppsV1Api(api).list_namespaced_deployment, namespace).start(),
        clusters=Watched(
            "modelclusters", k8s.CustomObjectsApi(api).list_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL
        ).start(),
        pods=Watched("pods", k8s.CoreV1Api(api).list_namespaced_pod, namespace).start(),
        slices=Watched("endpointslices", k8s.DiscoveryV1Api(api).list_namespaced_endpoint_slice, namespace).start(),
    )


def replicas_of(obj: dict[str, Any]) -> int:
    return int((obj.get("spec") or {}).get("replicas") or 0)


def ready_replicas_of(obj: dict[str, Any]) -> int:
    return int((obj.get("status") or {}).get("readyReplicas") or 0)


def instance_of(obj: dict[str, Any]) -> str | None:
    from modelcluster.api.labels import INSTANCE

    return ((obj.get("metadata") or {}).get("labels") or {}).get(INSTANCE)


def pod_is_ready(obj: dict[str, Any]) -> bool:
    if (obj.get("metadata") or {}).get("deletionTimestamp"):
        return False
    conditions = (obj.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def container_running(obj: dict[str, Any]) -> bool:
    statuses = (obj.get("status") or {}).get("containerStatuses") or []
    return any((s.get("state") or {}).get("running") for s in statuses)


def endpoint_ready(slice_: dict[str, Any], pod: str) -> bool:
    for endpoint in slice_.get("endpoints") or []:
        if (endpoint.get("targetRef") or {}).get("name") == pod and (endpoint.get("conditions") or {}).get("ready"):
            return True
    return False


# --- the system under test ---------------------------------------------------------------------------------------


@dataclass
class System:
    kubeconfig: Path
    gateway_url: str
    gateway_metrics_url: str
    key: str
    work: Path
    custom: Any  # kubernetes CustomObjectsApi
    http: Any  # httpx.Client
    logs: dict[str, Path] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)  # status and body of every answer that was not 200
    pool_key: str | None = None  # the key of POOL_TENANT, whose namespace has the warm pool
    signing_key: str | None = None  # signs the pods' credentials (a runtime's /metrics needs its cluster's)

    def pod_headers(self, cluster: dict[str, Any] | None) -> dict[str, str]:
        """The credential header of ``cluster``'s pods (a borrowed standby answers its cluster's too)."""
        from modelcluster.api.pod_auth import CredentialIssuer

        meta = (cluster or {}).get("metadata") or {}
        if self.signing_key is None or not meta.get("uid"):
            return {}
        return CredentialIssuer(self.signing_key).headers(str(meta["namespace"]), str(meta["name"]), str(meta["uid"]))

    def model_url(self, model: str) -> str:
        return f"{self.gateway_url}/models/v2/{model}"

    def post(self, model: str, body: dict[str, Any], timeout: float = ANSWER_TIMEOUT_S, key: str | None = None) -> int:
        headers = {"Authorization": f"Key {key or self.key}"}
        answer = self.http.post(self.model_url(model), headers=headers, json=body, timeout=timeout)
        if answer.status_code != 200:
            self.failures.append(
                f"{model} at {datetime.now(UTC):%H:%M:%S.%f}: {answer.status_code} {answer.text[:300]}"
            )
        return int(answer.status_code)

    def create_cluster(self, model: str, spec: dict[str, Any], namespace: str = TENANT) -> str:
        from modelcluster.api.naming import object_name

        name = object_name(model)
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ModelCluster",
            "metadata": {"name": name},
            "spec": {"model": model, **spec},
        }
        self.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
        return name

    def delete_cluster(self, name: str, namespace: str = TENANT) -> None:
        from kubernetes.client.exceptions import ApiException

        try:
            self.custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        except ApiException as error:
            if error.status != 404:
                raise


def write_inputs(work: Path, react: int, teardown: int, react_delay: float) -> tuple[Path, Path]:
    """Pod commands (the project's, plus the trivial server) and a catalog serving the bench models with it."""
    import yaml

    commands = yaml.safe_load((REPO / "e2e" / "pod-commands.yaml").read_text())
    commands[POD_IMAGE] = {
        "command": ["python3", str(SCRIPT), "--serve-pod"],
        "env": {"BENCH_REACT_DELAY_S": str(react_delay)},
    }
    pod_commands = work / "pod-commands.yaml"
    pod_commands.write_text(yaml.safe_dump(commands, sort_keys=False))
    models = [f"{REACT_PREFIX}{i:02d}" for i in range(react)] + [f"{TEARDOWN_PREFIX}{i}" for i in range(teardown)]
    catalog = work / "catalog.yaml"
    catalog.write_text(
        yaml.safe_dump(
            {
                "families": {"vision": {"image": POD_IMAGE}},
                "tiers": [BENCH_TIER],
                "models": [{"id": m, "task": "image-classification", "tier": BENCH_TIER["name"]} for m in models],
            }
        )
    )
    return pod_commands, catalog


def start_system(work: Path, processes: Processes, args: argparse.Namespace) -> System:
    import httpx
    from kubernetes import client as k8s
    from kubernetes import config as k8s_config

    from modelcluster.devcluster import controlplane, system
    from modelcluster.devcluster.config import ClusterConfig, load_pod_commands
    from modelcluster.devcluster.tools import ensure_tools

    pod_commands, catalog = write_inputs(work, args.trials, args.teardown_parallel, args.react_delay)
    ensure_tools()
    config = ClusterConfig(name=args.cluster_name, pod_commands=load_pod_commands(pod_commands))
    if controlplane.running(config):
        progress(f"stopping the running cluster {args.cluster_name} (it may hold other pod commands)")
        controlplane.down(config)
    progress(f"starting the local control plane {args.cluster_name} ...")
    kubeconfig = controlplane.up(config)
    progress("control plane ready; installing the CRD")

    def run_kubectl(*command: str, stdin: str | None = None) -> None:
        argv = [str(ensure_tools().kubectl), f"--kubeconfig={kubeconfig}", *command]
        subprocess.run(argv, input=stdin, capture_output=True, text=True, check=True)

    signing_key = system.pod_auth_key(config.state_dir / "pod-auth-key")
    system.install(run_kubectl, namespaces=(KEY_NAMESPACE,), pod_auth=signing_key)
    env = dict(os.environ, KUBECONFIG=str(kubeconfig), **system.pod_auth_env(signing_key))
    cli = system.executable()
    gateway_port, gateway_metrics_port, health, metrics = free_port(), free_port(), free_port(), free_port()
    gateway_url = f"http://127.0.0.1:{gateway_port}"
    gateway_metrics_url = f"http://127.0.0.1:{gateway_metrics_port}/metrics"
    logs = {"operator": work / "operator.log", "gateway": work / "gateway.log"}
    operator = processes.start(
        "operator",
        system.operator_argv(
            cli,
            metrics_port=metrics,
            health_port=health,
            lease_namespace=None,
            extra=[
                f"--catalog={catalog}",
                f"--scale-tick={SCALE_TICK_S}",
                f"--gateway-metrics-url={gateway_metrics_url}",
                *([f"--warm-pool={WARM_POOL}", f"--warm-pool-namespace={POOL_TENANT}"] if args.standby_trials else []),
            ],
        ),
        logs["operator"],
        env,
    )

    def operator_ready() -> bool:
        alive(operator, "the operator", logs["operator"])
        return http_status("GET", f"http://127.0.0.1:{health}/readyz") == 200

    progress("waiting for the operator ...")
    wait_for(operator_ready, 90, "the operator to become ready")
    gateway = processes.start(
        "gateway",
        system.gateway_argv(
            cli,
            port=gateway_port,
            metrics_port=gateway_metrics_port,
            host="127.0.0.1",
            key_namespace=KEY_NAMESPACE,
            extra=[f"--catalog={catalog}", "--hold-timeout=240"],
        ),
        logs["gateway"],
        env,
    )

    def gateway_ready() -> bool:
        alive(gateway, "the gateway", logs["gateway"])
        return http_status("GET", f"{gateway_url}/ready") == 200

    progress("waiting for the gateway ...")
    wait_for(gateway_ready, 60, "the gateway to become ready")
    created = subprocess.run(
        [cli, "keys", "create", f"--tenant={TENANT}", "--concurrency=100000", f"--namespace={KEY_NAMESPACE}"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    key = created.stdout.strip().splitlines()[-1]
    pool_key = None
    if args.standby_trials:
        argv = [cli, "keys", "create", f"--tenant={POOL_TENANT}", "--concurrency=1000", f"--namespace={KEY_NAMESPACE}"]
        pool_key = subprocess.run(argv, env=env, capture_output=True, text=True, check=True).stdout.split()[-1]
    headers = {"Authorization": f"Key {key}"}
    progress("waiting for the gateway to learn the key ...")
    wait_for(lambda: http_status("GET", f"{gateway_url}/models/v2/list/tasks", headers) == 200, 30, "the key")
    api = k8s_config.new_client_from_config(str(kubeconfig))
    http = httpx.Client(limits=httpx.Limits(max_connections=256, max_keepalive_connections=64))
    if pool_key is not None:
        pool_headers = {"Authorization": f"Key {pool_key}"}
        wait_for(lambda: http_status("GET", f"{gateway_url}/models/v2/list/tasks", pool_headers) == 200, 30, "key")
    custom = k8s.CustomObjectsApi(api)
    return System(
        kubeconfig, gateway_url, gateway_metrics_url, key, work, custom, http, logs, pool_key=pool_key,
        signing_key=signing_key,
    )  # fmt: skip


# --- reaction ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reaction:
    seconds: float | None  # queue over the target -> spec.replicas changed (None: no change within 30 s)
    from_burst: float | None  # burst sent -> spec.replicas changed
    gauge_seconds: float | None  # burst sent -> first poll showing the gauge over the target
    answered: int
    ok: int


def poll_gauge(system: System, key: tuple[str, str], threshold: float, since: float, deadline: float) -> float | None:
    """When the gateway's outstanding gauge of ``key`` went above ``threshold``, at the earliest (20 ms polls).

    That is when the last poll that did not show it yet was sent (``since`` if the first one did): the
    crossing happened after it, so a reaction counted from here is at most one poll longer than the truth.
    """
    import httpx

    from modelcluster.operator.autoscaling.signals import parse_gateway

    before = since
    with httpx.Client(timeout=2.0) as http:
        while time.monotonic() < deadline:
            sent = time.time()
            try:
                text = http.get(system.gateway_metrics_url).text
            except httpx.HTTPError:
                text = ""
            signal = parse_gateway(text).get(key)
            if signal is not None and signal.outstanding > threshold:
                return before
            before = sent
            time.sleep(0.02)
    return None


def measure_reaction(system: System, watches: Watches, args: argparse.Namespace) -> list[Reaction]:
    models = [f"{REACT_PREFIX}{i:02d}" for i in range(args.trials)]
    spec = {
        "capacity": {"min": 1, "desired": 1, "max": 2},
        "targetPerReplica": args.target_per_replica,
        "timeout": 600,
    }
    progress(f"reaction: creating {len(models)} clusters of the trivial server (1 pod each) ...")
    names = [system.create_cluster(model, spec) for model in models]
    watches.deployments.until(
        lambda latest: all(n in latest and ready_replicas_of(latest[n]) >= 1 for n in names),
        240,
        "every reaction cluster to have a ready pod",
    )
    results: list[Reaction] = []
    with ThreadPoolExecutor(max_workers=args.burst + 1) as pool:
        for index, (model, name) in enumerate(zip(models, names, strict=True)):
            time.sleep(random.uniform(0.0, SCALE_TICK_S))  # bursts fall anywhere in the autoscaler's tick
            started = time.time()
            deadline = time.monotonic() + 10 + args.react_delay
            gauge = pool.submit(poll_gauge, system, (TENANT, name), args.target_per_replica, started, deadline)
            answers = [pool.submit(system.post, model, PNG_BODY) for _ in range(args.burst)]
            change = watches.deployments.first(
                lambda seen, name=name: seen.name == name and replicas_of(seen.obj) != 1, started, 30
            )
            codes = [answer.result() for answer in answers]
            seen_at = gauge.result()
            result = Reaction(
                seconds=change.at - seen_at if change and seen_at else None,
                from_burst=change.at - started if change else None,
                gauge_seconds=seen_at - started if seen_at else None,
                answered=len(codes),
                ok=sum(1 for code in codes if code == 200),
            )
            results.append(result)
            reaction = f"{result.seconds:.3f} s" if result.seconds is not None else "no change or gauge not seen"
            burst = f"{result.from_burst:.3f} s" if result.from_burst is not None else "—"
            gauge_text = f"{result.gauge_seconds * 1000:.0f} ms" if result.gauge_seconds is not None else "not seen"
            progress(
                f"  reaction {index + 1}/{len(models)}: {reaction} from the queue, {burst} from the burst "
                f"(gauge over target {gauge_text} after the burst; {result.ok}/{result.answered} answered 200)"
            )
            system.delete_cluster(name)
    return results


# --- teardown ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Teardown:
    to_zero: float | None  # last answer -> spec.replicas 0
    to_stopped: float | None  # last answer -> status stopped
    woke: bool  # the round started from a stopped cluster
    wake_to_answer: float | None
    ready_to_answer: float | None
    code: int


def teardown_rounds(
    system: System, watches: Watches, model: str, name: str, rounds: int, timeout: float
) -> list[Teardown]:
    results: list[Teardown] = []
    for round_index in range(rounds):
        latest = watches.clusters.latest.get(name) or {}
        woke = ((latest.get("status") or {}).get("status") == "stopped") and round_index > 0
        posted = time.time()
        code = system.post(model, PNG_BODY)
        done = time.time()
        # The answer may come before the pod's Ready condition (routed on its first healthy answer): wait for it.
        ready = (
            watches.pods.first(lambda seen: instance_of(seen.obj) == name and pod_is_ready(seen.obj), posted, 30)
            if woke
            else None
        )
        deadline = timeout + 60
        zero = watches.deployments.first(lambda seen: seen.name == name and replicas_of(seen.obj) == 0, done, deadline)
        stopped = watches.clusters.first(
            lambda seen: seen.name == name and (seen.obj.get("status") or {}).get("status") == "stopped",
            done,
            deadline,
        )
        results.append(
            Teardown(
                to_zero=zero.at - done if zero else None,
                to_stopped=stopped.at - done if stopped else None,
                woke=woke,
                wake_to_answer=done - posted if woke else None,
                ready_to_answer=done - ready.at if ready else None,
                code=code,
            )
        )
        last = results[-1]
        progress(
            f"  teardown {name} round {round_index + 1}/{rounds}: answer {code}"
            + (f" after a wake of {last.wake_to_answer:.2f} s" if last.wake_to_answer is not None else "")
            + f"; replicas 0 after {last.to_zero if last.to_zero is not None else float('nan'):.2f} s, "
            f"stopped after {last.to_stopped if last.to_stopped is not None else float('nan'):.2f} s"
        )
    return results


def measure_teardown(system: System, watches: Watches, args: argparse.Namespace) -> list[Teardown]:
    parallel = max(1, min(args.teardown_parallel, args.trials))
    rounds = math.ceil(args.trials / parallel)
    models = [f"{TEARDOWN_PREFIX}{i}" for i in range(parallel)]
    spec = {"capacity": {"min": 0, "desired": 1, "max": 1}, "timeout": args.teardown_timeout}
    progress(
        f"teardown: {parallel} clusters (timeout {args.teardown_timeout} s, min 0) x {rounds} rounds, side by side ..."
    )
    names = [system.create_cluster(model, spec) for model in models]
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        futures = [
            pool.submit(teardown_rounds, system, watches, model, name, rounds, args.teardown_timeout)
            for model, name in zip(models, names, strict=True)
        ]
        results = [trial for future in futures for trial in future.result()]
    for name in names:
        system.delete_cluster(name)
    return results[: args.trials]


# --- wake-to-first-answer ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Wake:
    total: float
    phases: dict[str, float | None]  # phase name -> seconds since the POST
    load_seconds: float | None
    code: int

    @property
    def ready_to_answer(self) -> float | None:
        """Negative when the answer came first: the gateway routed on the pod's first healthy answer."""
        ready = self.phases.get("Ready condition")
        return self.total - ready if ready is not None else None

    @property
    def healthy_to_answer(self) -> float | None:
        healthy = self.phases.get("runtime healthy")
        return self.total - healthy if healthy is not None else None


PHASES = (
    "pod created",
    "scheduled",
    "container started",
    "runtime healthy",
    "Ready condition",
    "endpoint ready",
)


def poll_health(address: str, deadline: float) -> float | None:
    """The first time the runtime at ``address`` answers ``/health`` 200 (50 ms polls, pod address only)."""
    import httpx

    url = f"http://{address}:{POD_PORT}/health"
    with httpx.Client(timeout=0.5) as http:
        while time.monotonic() < deadline:
            try:
                if http.get(url).status_code == 200:
                    return time.time()
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
    return None


def load_seconds_of(address: str, headers: dict[str, str]) -> float | None:
    """The runtime's own model load time, from its ``/metrics`` (read with its cluster's pod credential)."""
    import httpx

    try:
        text = httpx.get(f"http://{address}:{POD_PORT}/metrics", headers=headers, timeout=5.0).text
    except httpx.HTTPError:
        return None
    found = re.search(r"^modelcluster_runtime_model_load_seconds (\S+)", text, re.MULTILINE)
    return float(found.group(1)) if found else None


def one_wake(system: System, watches: Watches, model: str, name: str) -> Wake:
    posted = time.time()
    health: dict[str, float | None] = {}

    def follow_pod() -> None:
        seen = watches.pods.first(
            lambda s: instance_of(s.obj) == name and bool((s.obj.get("status") or {}).get("podIP")), posted, 240
        )
        if seen is not None:
            health["at"] = poll_health(seen.obj["status"]["podIP"], time.monotonic() + 240)

    follower = threading.Thread(target=follow_pod, daemon=True)
    follower.start()
    code = system.post(model, TEXT_BODY)
    answered = time.time()
    follower.join(timeout=5)
    created = watches.pods.first(lambda s: instance_of(s.obj) == name and s.kind == "ADDED", posted, 0)
    pod = created.name if created else None

    def at(match: Callable[[Seen], bool], watched: Watched | None = None, wait: float = 0) -> float | None:
        seen = (watched or watches.pods).first(match, posted, wait) if pod else None
        return seen.at - posted if seen else None

    phases: dict[str, float | None] = {
        "pod created": created.at - posted if created else None,
        "scheduled": at(lambda s: s.name == pod and bool((s.obj.get("spec") or {}).get("nodeName"))),
        "container started": at(lambda s: s.name == pod and container_running(s.obj)),
        "runtime healthy": health["at"] - posted if health.get("at") else None,
        # The answer may come first (routed on the pod's first healthy answer): wait for these a little.
        "Ready condition": at(lambda s: s.name == pod and pod_is_ready(s.obj), wait=15),
        "endpoint ready": at(lambda s: endpoint_ready(s.obj, str(pod)), watches.slices, wait=15),
    }
    address = ((watches.pods.latest.get(str(pod)) or {}).get("status") or {}).get("podIP")
    load = load_seconds_of(address, system.pod_headers(watches.clusters.latest.get(name))) if address else None
    return Wake(total=answered - posted, phases=phases, load_seconds=load, code=code)


def measure_wake(system: System, watches: Watches, args: argparse.Namespace) -> list[Wake]:
    from modelcluster.devcluster.offline_models import MODEL_ID

    spec = {"capacity": {"min": 0, "desired": 1, "max": 1}, "timeout": args.teardown_timeout}
    progress(f"wake: {MODEL_ID} (real runtime, offline hub cache), 1 warm-up + {args.wake_trials} wakes ...")
    name = system.create_cluster(MODEL_ID, spec)
    results: list[Wake] = []
    for index in range(args.wake_trials + 1):

        def stopped_and_gone(latest: dict[str, dict[str, Any]]) -> bool:
            status = (watches.clusters.latest.get(name) or {}).get("status") or {}
            return status.get("status") == "stopped" and not any(instance_of(p) == name for p in latest.values())

        watches.pods.until(stopped_and_gone, 300, f"{name} stopped with no pod left")
        wake = one_wake(system, watches, MODEL_ID, name)
        label = "warm-up" if index == 0 else f"{index}/{args.wake_trials}"
        load = f"{wake.load_seconds:.2f} s" if wake.load_seconds is not None else "?"
        progress(f"  wake {label}: answer {wake.code} after {wake.total:.2f} s (model load {load})")
        if index:
            results.append(wake)
    system.delete_cluster(name)
    return results


# --- wake with a warm standby, and T_plain -----------------------------------------------------------------------


@dataclass(frozen=True)
class StandbyWake:
    total: float  # POST -> answer
    claimed: float | None  # POST -> the standby relabelled into the cluster (watch)
    named: float | None  # POST -> the cluster's status.borrowedPod names it (watch): the gateway probes it now
    healthy: float | None  # POST -> the borrowed pod's first /health 200 (50 ms polls)
    handover: float | None  # POST -> the borrowed pod deleted (its cluster's own pod Ready)
    code: int
    load_seconds: float | None  # the claimed runtime's own model load

    @property
    def healthy_to_answer(self) -> float | None:
        return self.total - self.healthy if self.healthy is not None else None


def warm_standby(latest: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    from modelcluster.api.warm_pool import STANDBY, STATE_LABEL

    for pod in latest.values():
        meta = pod.get("metadata") or {}
        statuses = (pod.get("status") or {}).get("containerStatuses") or []
        waiting = (meta.get("labels") or {}).get(STATE_LABEL) == STANDBY and not meta.get("deletionTimestamp")
        if waiting and statuses and statuses[0].get("started") and (pod.get("status") or {}).get("podIP"):
            return pod
    return None


def one_standby_wake(system: System, watches: Watches, model: str, name: str) -> StandbyWake:
    from modelcluster.api.warm_pool import CLAIMED, STATE_LABEL

    posted = time.time()
    health: dict[str, Any] = {}

    def is_claim(seen: Seen) -> bool:
        labels = (seen.obj.get("metadata") or {}).get("labels") or {}
        return labels.get(STATE_LABEL) == CLAIMED and instance_of(seen.obj) == name

    def follow() -> None:
        seen = watches.pods.first(is_claim, posted, 240)
        if seen is not None:
            health["pod"] = seen.name
            health["claimed"] = seen.at - posted
            health["at"] = poll_health(seen.obj["status"]["podIP"], time.monotonic() + 240)

    follower = threading.Thread(target=follow, daemon=True)
    follower.start()
    code = system.post(model, TEXT_BODY, key=system.pool_key)
    answered = time.time()
    follower.join(timeout=10)
    pod = health.get("pod")
    address = ((watches.pods.latest.get(str(pod)) or {}).get("status") or {}).get("podIP") if pod else None
    load = load_seconds_of(address, system.pod_headers(watches.clusters.latest.get(name))) if address else None
    named = watches.clusters.first(
        lambda s: s.name == name and ((s.obj.get("status") or {}).get("borrowedPod") or {}).get("name") == pod,
        posted,
        5,
    ) if pod else None  # fmt: skip
    gone = watches.pods.first(lambda s: s.name == pod and s.kind == "DELETED", posted, 300) if pod else None
    at = health.get("at")
    return StandbyWake(
        total=answered - posted,
        claimed=health.get("claimed"),
        named=named.at - posted if named else None,
        healthy=at - posted if at else None,
        handover=gone.at - posted if gone else None,
        code=code,
        load_seconds=load,
    )


def measure_standby_wake(system: System, args: argparse.Namespace) -> list[StandbyWake]:
    from modelcluster.devcluster.offline_models import MODEL_ID

    watches = start_watches(system.kubeconfig, POOL_TENANT)
    results: list[StandbyWake] = []
    try:
        spec = {"capacity": {"min": 0, "desired": 1, "max": 1}, "timeout": args.teardown_timeout}
        progress(f"standby wake: {MODEL_ID}, pool {WARM_POOL} in {POOL_TENANT}, {args.standby_trials} wakes ...")
        name = system.create_cluster(MODEL_ID, spec, namespace=POOL_TENANT)
        for index in range(1, args.standby_trials + 1):

            def ready_for_a_wake(latest: dict[str, dict[str, Any]]) -> bool:
                status = (watches.clusters.latest.get(name) or {}).get("status") or {}
                stopped = status.get("status") == "stopped"
                return (
                    stopped and not any(instance_of(p) == name for p in latest.values()) and bool(warm_standby(latest))
                )

            watches.pods.until(ready_for_a_wake, 600, f"{name} stopped, no pod of it left, a warm standby")
            wake = one_standby_wake(system, watches, MODEL_ID, name)
            load = f"{wake.load_seconds:.2f} s" if wake.load_seconds is not None else "?"
            handed = f"{wake.handover:.1f} s" if wake.handover is not None else "?"
            progress(f"  standby wake {index}/{args.standby_trials}: answer {wake.code} after {wake.total:.2f} s "
                     f"(model load {load}, handed over after {handed})")  # fmt: skip
            results.append(wake)
        system.delete_cluster(name, namespace=POOL_TENANT)
    finally:
        watches.stop()
    return results


def measure_plain(trials: int) -> list[Any]:
    from standby_wake import model_dir, plain

    found = []
    for index in range(1, trials + 1):
        trial = plain(model_dir())
        progress(f"  T_plain {index}/{trials}: {trial.total:.2f} s")
        found.append(trial)
    return found


# --- tick CPU (own process) --------------------------------------------------------------------------------------


def tick_cpu(clusters: int, ticks: int, pods_per_cluster: int, seed: int, changing: float = 0.1) -> dict[str, Any]:
    """Time the autoscaler's work per simulated second over in-memory tables (run in a process of its own).

    Demand is pushed as in production: two gateways' and every pod's :class:`DemandFeed` (the publishers' own
    objects); each simulated second a ``changing`` share of the clusters gets new demand (counts and last request),
    and the second's work is timed: parsing the feeds' answers (JSON built beforehand, as the publishers would
    send them), taking them into the subscriptions' mirrors, and one ``tick()`` over every cluster. The HTTP of
    the long polls is not in it. Status writes are counted per active cluster per simulated minute.
    """

    from modelcluster.api.demand import DemandChanges, DemandFeed
    from modelcluster.api.labels import INSTANCE, MANAGED_BY, MANAGER
    from modelcluster.catalog import load_catalog
    from modelcluster.operator.autoscaling.config import AutoscalerConfig
    from modelcluster.operator.autoscaling.loop import Autoscaler
    from modelcluster.operator.autoscaling.subscriptions import Subscription
    from modelcluster.operator.controller.store import Store

    FakeKube = test_support().FakeKube
    rng = random.Random(seed)
    models = [
        "sentence-transformers/all-MiniLM-L6-v2",
        "openai-community/gpt2",
        "google/vit-base-patch16-224",
        "facebook/bart-large-mnli",
    ]
    gateways = ("http://127.0.0.1:9/metrics?gateway=0", "http://127.0.0.1:9/metrics?gateway=1")

    tables: list[Any] = []

    def follow(body: dict[str, Any]) -> None:
        """The Deployment takes the applied replica count (what the informer would show a moment later)."""
        if not tables:
            return
        metadata = body["metadata"]
        group = tables[0].deployments.items.get((metadata["namespace"], metadata["name"])) or {}
        for deployment in group.values():
            replicas = body["spec"]["replicas"]
            deployment["spec"]["replicas"] = replicas
            deployment["status"]["readyReplicas"] = replicas

    def iso(stamp: float) -> str:
        return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    async def main() -> dict[str, Any]:
        kube = FakeKube(on_apply=follow)
        autoscaler = Autoscaler(kube, load_catalog(), AutoscalerConfig(gateway_urls=gateways), Store())
        tables.append(autoscaler)

        async def no_publishers(now: float) -> None:
            """The subscriptions are fed below, without HTTP."""

        autoscaler.follow_publishers = no_publishers  # type: ignore[method-assign]
        start = time.time()
        bodies, deployments, pods = [], [], []
        pod_feeds: dict[str, tuple[tuple[str, str], DemandFeed]] = {}
        for index in range(clusters):
            namespace, name = f"tenant-{index % 50}", f"cluster-{index:05d}"
            bodies.append(
                {
                    "apiVersion": f"{GROUP}/{VERSION}",
                    "kind": "ModelCluster",
                    "metadata": {
                        "name": name,
                        "namespace": namespace,
                        "uid": f"uid-{index}",
                        "creationTimestamp": iso(start - 3600),
                    },
                    "spec": {
                        "model": models[index % len(models)],
                        "capacity": {"min": 0, "desired": 1, "max": 8},
                        "timeout": 300,
                    },
                    "status": {"lastRequestTime": iso(start - 30), "queueDepth": 0},
                }
            )
            labels = {INSTANCE: name, MANAGED_BY: MANAGER}
            owners = [{"kind": "ModelCluster", "name": name, "uid": f"uid-{index}", "controller": True}]
            deployments.append(
                {
                    "metadata": {"name": name, "namespace": namespace, "labels": labels, "ownerReferences": owners},
                    "spec": {"replicas": pods_per_cluster},
                    "status": {"readyReplicas": pods_per_cluster},
                }
            )
            for replica in range(pods_per_cluster):
                pod = f"{name}-{replica}"
                pods.append(
                    {
                        "metadata": {"name": pod, "namespace": namespace, "labels": labels},
                        "status": {"podIP": "127.0.0.1", "conditions": [{"type": "Ready", "status": "True"}]},
                    }
                )
                pod_feeds[pod] = ((namespace, name), DemandFeed())
        autoscaler.clusters.reset(bodies)
        autoscaler.deployments.reset(deployments)
        autoscaler.pods.reset(pods)

        keys = [(body["metadata"]["namespace"], body["metadata"]["name"]) for body in bodies]
        by_cluster: dict[tuple[str, str], list[str]] = {}
        for pod, (key, _) in pod_feeds.items():
            by_cluster.setdefault(key, []).append(pod)
        base = {key: rng.choice((0, 0, 1, 2, 3, 5, 8, 13)) for key in keys}  # each cluster's usual load
        feeds = {url: DemandFeed() for url in gateways}
        subs = {url: Subscription(url) for url in gateways}
        pod_subs = {pod: Subscription(f"http://{pod}/demand", key, pod) for pod, (key, _) in pod_feeds.items()}
        for url, sub in subs.items():
            autoscaler.gateway_feeds.items[url] = sub
        for sub in pod_subs.values():
            autoscaler.pod_feeds.items[sub.url] = sub

        def publish(now: float, share: float) -> list[tuple[Any, bytes]]:
            """A share of the clusters' demand changes; the answers their publishers send (built untimed)."""
            changed = keys if share >= 1 else rng.sample(keys, max(1, int(len(keys) * share)))
            for key in changed:
                for feed in feeds.values():
                    outstanding = max(0, base[key] + rng.randint(-1, 1))
                    feed.set(key, outstanding, outstanding // 4, now - rng.random() * 0.5)
                for pod in by_cluster.get(key, []):
                    pod_feeds[pod][1].set(("", ""), rng.randint(0, 2), 0, now - rng.random() * 0.5)
            answers = []
            for url, sub in subs.items():
                answers.append((sub, feeds[url].changes(sub.epoch, sub.version).model_dump_json(by_alias=True)))
            for key in changed:
                for pod in by_cluster.get(key, []):
                    sub, feed = pod_subs[pod], pod_feeds[pod][1]
                    answers.append((sub, feed.changes(sub.epoch, sub.version).model_dump_json(by_alias=True)))
            return answers

        cpu: list[float] = []
        wall: list[float] = []
        parsed: list[int] = []
        status_writes = demand_writes = 0
        for tick in range(ticks + 1):
            now = start + tick * SCALE_TICK_S
            answers = publish(now, 1.0 if tick == 0 else changing)
            statuses_before, applies_before = len(kube.statuses), len(kube.applies)
            began_cpu, began_wall = time.process_time(), time.perf_counter()
            for sub, body in answers:
                sub.seen = now
                sub.apply(DemandChanges.model_validate_json(body))
            await autoscaler.tick(now)
            cpu.append(time.process_time() - began_cpu)
            wall.append(time.perf_counter() - began_wall)
            parsed.append(len(answers))
            if tick:
                written = len(kube.statuses) - statuses_before
                status_writes += written
                # Each scale decision (one replicas apply) writes its status; the rest are for the demand alone.
                demand_writes += max(0, written - (len(kube.applies) - applies_before))
        minutes = ticks * SCALE_TICK_S / 60
        return {
            "clusters": clusters,
            "pods": len(pods),
            "changing": changing,
            "answers": statistics.mean(parsed[1:]) if ticks else 0,
            "first_cpu": cpu[0],
            "cpu": cpu[1:],
            "wall": wall[1:],
            "status_per_cluster_minute": status_writes / clusters / minutes if minutes else 0.0,
            "demand_status_per_cluster_minute": demand_writes / clusters / minutes if minutes else 0.0,
            "writes_per_tick": len(kube.writes) / (ticks + 1),
        }

    return asyncio.run(main())


def measure_tick(args: argparse.Namespace) -> dict[str, Any]:
    progress(
        f"tick CPU: {args.tick_clusters} clusters x {args.tick_pods} ready pods, "
        f"{args.tick_ticks} ticks after one warm-up (separate process) ..."
    )
    argv = [
        sys.executable,
        str(SCRIPT),
        "--tick-json",
        f"--tick-clusters={args.tick_clusters}",
        f"--tick-ticks={args.tick_ticks}",
        f"--tick-pods={args.tick_pods}",
        f"--tick-changing={args.tick_changing}",
    ]
    done = subprocess.run(argv, capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# --- the report --------------------------------------------------------------------------------------------------


def stats(values: list[float]) -> str:
    if not values:
        return "—"
    return f"{percentile(values, 50):8.3f} {percentile(values, 95):8.3f} {max(values):8.3f}"


def row(figure: str, values: list[float], of: int, target: str, ok: bool | None) -> str:
    counted = f"{len(values)}/{of}"
    mark = "—" if ok is None else verdict(ok)
    return f"{figure:<46} {counted:>7} {stats(values):>26}   {target:<34} {mark}"


def print_report(
    args: argparse.Namespace,
    reactions: list[Reaction],
    teardowns: list[Teardown],
    wakes: list[Wake],
    tick: dict[str, Any] | None,
    load_at_start: float,
) -> None:
    print()
    print(
        f"Run: --trials {args.trials} (reaction, teardown), --wake-trials {args.wake_trials} (+1 warm-up), "
        f"burst {args.burst} requests held {args.react_delay:g} s each by the pod, targetPerReplica "
        f"{args.target_per_replica:g}, teardown timeout {args.teardown_timeout} s on {args.teardown_parallel} clusters "
        f"side by side, autoscaler tick {SCALE_TICK_S:g} s; tick CPU at {args.tick_clusters} clusters x "
        f"{args.tick_pods} pods over {args.tick_ticks} ticks."
    )
    print(
        f"{os.cpu_count()} CPUs; 1-minute load average {load_at_start:.2f} at the start, {os.getloadavg()[0]:.2f} now."
    )
    header = f"{'figure (seconds)':<46} {'trials':>7} {'p50':>8} {'p95':>8} {'max':>8}   {'target':<34} verdict"
    print(header)
    print("-" * len(header))
    if reactions:
        reacted = [r.seconds for r in reactions if r.seconds is not None]
        ok = len(reacted) == len(reactions) and percentile(reacted, 95) <= TARGET_REACTION_P95_S
        print(row("reaction: queue over target -> replicas changed", reacted, len(reactions), "p95 <= 0.5 s", ok))
        burst = [r.from_burst for r in reactions if r.from_burst is not None]
        print(row("  (burst sent -> replicas changed)", burst, len(reactions), "", None))
        gauge = [r.gauge_seconds for r in reactions if r.gauge_seconds is not None]
        print(row("  (burst sent -> gateway gauge over target)", gauge, len(reactions), "", None))
    if teardowns:
        bound = args.teardown_timeout + TARGET_TEARDOWN_SLACK_S
        zero = [t.to_zero for t in teardowns if t.to_zero is not None]
        stopped = [t.to_stopped for t in teardowns if t.to_stopped is not None]
        target = f"max <= timeout + 5 = {bound:g} s"
        print(
            row(
                "teardown: last answer -> spec.replicas 0",
                zero,
                len(teardowns),
                target,
                len(zero) == len(teardowns) and max(zero) <= bound,
            )
        )
        print(
            row(
                "teardown: last answer -> status stopped",
                stopped,
                len(teardowns),
                target,
                len(stopped) == len(teardowns) and max(stopped) <= bound,
            )
        )
        woken = [t for t in teardowns if t.woke]
        trivial_wake = [t.wake_to_answer for t in woken if t.wake_to_answer is not None]
        trivial_ready = [t.ready_to_answer for t in woken if t.ready_to_answer is not None]
        print(row("wake-to-first-answer, trivial server (no model)", trivial_wake, len(woken), "", None))
        print(
            row(
                "Ready -> first held answer, trivial server",
                trivial_ready,
                len(woken),
                "max <= 0.1 s",
                bool(trivial_ready) and max(trivial_ready) <= TARGET_READY_TO_ANSWER_S,
            )
        )
    if wakes:
        totals = [w.total for w in wakes]
        loads = [w.load_seconds for w in wakes if w.load_seconds is not None]
        over = [w.total - w.load_seconds for w in wakes if w.load_seconds is not None]
        ready = [w.ready_to_answer for w in wakes if w.ready_to_answer is not None]
        healthy = [w.healthy_to_answer for w in wakes if w.healthy_to_answer is not None]
        print(row("wake-to-first-answer, all-MiniLM-L6-v2", totals, len(wakes), "", None))
        print(row("  model load (runtime's own figure)", loads, len(wakes), "", None))
        print(
            row(
                "  wake-to-first-answer minus model load",
                over,
                len(wakes),
                "max <= 2 s",
                len(over) == len(wakes) and max(over) <= TARGET_WAKE_OVER_LOAD_S,
            )
        )
        print(
            row(
                "runtime healthy -> first held answer, MiniLM",
                healthy,
                len(wakes),
                "max <= 0.1 s",
                len(healthy) == len(wakes) and max(healthy) <= TARGET_READY_TO_ANSWER_S,
            )
        )
        print(
            row(
                "Ready -> first held answer, MiniLM (< 0: before Ready)",
                ready,
                len(wakes),
                "max <= 0.1 s",
                len(ready) == len(wakes) and max(ready) <= TARGET_READY_TO_ANSWER_S,
            )
        )
    if tick is not None:
        share = f"{tick['changing']:.0%} changing/s"
        print(
            row(
                f"tick CPU, {tick['clusters']} clusters / {tick['pods']} pods, {share}",
                tick["cpu"],
                len(tick["cpu"]),
                "p95 <= 0.05 s",
                percentile(tick["cpu"], 95) <= TARGET_TICK_P95_S,
            )
        )
        print(row("  (tick wall time, same ticks)", tick["wall"], len(tick["wall"]), "", None))
        per_minute = tick["demand_status_per_cluster_minute"]
        print(
            f"{'status writes per active cluster per minute':<46} {len(tick['cpu']):>7} {per_minute:>8.3f} "
            f"{'':>8} {'':>8}   {'<= 1 (steady state)':<34} "
            f"{verdict(per_minute <= TARGET_STATUS_WRITES_PER_CLUSTER_MINUTE)}"
        )
        print(
            f"{'  (with those of scale decisions)':<46} {len(tick['cpu']):>7} {tick['status_per_cluster_minute']:>8.3f}"
        )
    if wakes:
        print_phases(wakes)
    if tick is not None:
        print(
            f"Tick: first tick {tick['first_cpu']:.3f} s CPU (not counted: everything new, a full resync); "
            f"{tick['answers']:.0f} demand-feed answers (2 gateways, the changed pods) taken per tick; "
            f"{tick['writes_per_tick']:.1f} (stubbed) writes per tick (replicas and status; the stub Deployments "
            "follow the applied targets)."
        )
    not_ok = sum(r.answered - r.ok for r in reactions) + sum(1 for t in teardowns if t.code != 200)
    not_ok += sum(1 for w in wakes if w.code != 200)
    answered = sum(r.answered for r in reactions) + len(teardowns) + len(wakes)
    print(f"Requests answered 200: {answered - not_ok}/{answered}")


def print_phases(wakes: list[Wake]) -> None:
    print()
    print("Wake of all-MiniLM-L6-v2, seconds since the POST (each phase as first seen here; median, then per trial):")
    columns = [*PHASES, "answer"]
    print(f"{'':<8}" + "".join(f"{c:>19}" for c in columns) + f"{'model load':>13}")

    def cell(value: float | None) -> str:
        return f"{value:>19.3f}" if value is not None else f"{'—':>19}"

    def median(name: str) -> float | None:
        values = [w.phases[name] for w in wakes if w.phases.get(name) is not None]
        return statistics.median(v for v in values if v is not None) if values else None

    loads = [w.load_seconds for w in wakes if w.load_seconds is not None]
    print(
        f"{'median':<8}"
        + "".join(cell(median(name)) for name in PHASES)
        + cell(statistics.median(w.total for w in wakes))
        + (f"{statistics.median(loads):>13.3f}" if loads else f"{'—':>13}")
    )
    for index, wake in enumerate(wakes, 1):
        load = f"{wake.load_seconds:>13.3f}" if wake.load_seconds is not None else f"{'—':>13}"
        print(
            f"{'#' + str(index):<8}" + "".join(cell(wake.phases.get(name)) for name in PHASES) + cell(wake.total) + load
        )
    print(
        "runtime healthy: the benchmark's own 50 ms /health polls of the pod; Ready condition: the pod runner's "
        "readiness (startup probe every 1 s, then readiness), as the watch delivered it."
    )


def print_standby(wakes: list[Wake], standby: list[StandbyWake], plain: list[Any]) -> None:
    """The wake with a standby beside T_plain and the wake without one, with their phases and targets."""
    print()
    print("Wake with and without a warm standby, all-MiniLM-L6-v2 (seconds):")
    header = f"{'figure (seconds)':<46} {'trials':>7} {'p50':>8} {'p95':>8} {'max':>8}   {'target':<34} verdict"
    print(header)
    print("-" * len(header))
    totals = [w.total for w in standby]
    ok = bool(totals) and statistics.median(totals) <= TARGET_STANDBY_WAKE_P50_S and all(w.code == 200 for w in standby)
    print(row("wake-to-first-answer, standby borrowed", totals, len(standby), "p50 <= 1.5 s", ok if totals else None))
    plain_totals = [t.total for t in plain]
    print(row("T_plain: fresh process, import, load, encode", plain_totals, len(plain), "", None))
    cold = [w.total for w in wakes]
    if cold and plain_totals:
        bound = statistics.median(plain_totals) + TARGET_WAKE_OVER_PLAIN_S
        ok = statistics.median(cold) <= bound
        print(row("wake-to-first-answer, no standby", cold, len(cold), f"p50 <= T_plain + 1 = {bound:.1f} s", ok))
    elif cold:
        print(row("wake-to-first-answer, no standby", cold, len(cold), "", None))
    healthy = [w.healthy_to_answer for w in standby if w.healthy_to_answer is not None]
    healthy += [w.healthy_to_answer for w in wakes if w.healthy_to_answer is not None]
    if healthy:
        ok = max(healthy) <= TARGET_HEALTHY_TO_ANSWER_S
        print(row("first /health 200 -> first held answer", healthy, len(healthy), "max <= 0.1 s", ok))
    if standby:
        print()
        print("Standby wake phases, seconds since the POST (median, then per trial):")
        names = ("standby claimed", "named in status", "runtime healthy", "answer", "handed over", "model load")
        print(f"{'':<8}" + "".join(f"{n:>17}" for n in names))

        def cells(values: list[float | None]) -> str:
            return "".join(f"{v:>17.3f}" if v is not None else f"{'—':>17}" for v in values)

        def per(w: StandbyWake) -> list[float | None]:
            return [w.claimed, w.named, w.healthy, w.total, w.handover, w.load_seconds]

        columns = list(zip(*(per(w) for w in standby), strict=True))
        medians = [statistics.median([v for v in c if v is not None]) if any(v is not None for v in c) else None
                   for c in columns]  # fmt: skip
        print(f"{'median':<8}" + cells(medians))
        for index, wake in enumerate(standby, 1):
            print(f"{'#' + str(index):<8}" + cells(per(wake)))
    if plain:
        print()
        print("T_plain phases (median): " + ", ".join(
            f"{name} {statistics.median(t.phases[name] for t in plain):.2f}" for name in plain[0].phases
        ))  # fmt: skip


def print_logs(logs: dict[str, Path]) -> None:
    for name, path in logs.items():
        text = path.read_text(errors="replace") if path.exists() else ""
        noisy = [line for line in text.splitlines() if " WARNING " in line or " ERROR " in line or "Traceback" in line]
        print(f"{name} log {path}: {len(noisy)} warning/error line(s)")
        for line in noisy[:5]:
            print(f"  {line[:200]}")


# --- the run -----------------------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> None:
    load_at_start = os.getloadavg()[0]
    tick = measure_tick(args)
    progress(
        f"  tick CPU p50 {percentile(tick['cpu'], 50) * 1000:.1f} ms, p95 {percentile(tick['cpu'], 95) * 1000:.1f} ms"
    )
    if args.tick_only:
        print_report(args, [], [], [], tick, load_at_start)
        return
    if os.geteuid() != 0:
        raise SystemExit("run as root: the local cluster's pods live in network namespaces (or use --tick-only)")
    work = Path(tempfile.mkdtemp(prefix="autoscale-bench-"))
    progress(f"logs and configs in {work}; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    processes = Processes()
    watches: Watches | None = None
    system: System | None = None
    try:
        system = start_system(work, processes, args)
        watches = start_watches(system.kubeconfig)
        reactions = measure_reaction(system, watches, args)
        teardowns = measure_teardown(system, watches, args)
        wakes = measure_wake(system, watches, args) if args.wake_trials else []
        standby = measure_standby_wake(system, args) if args.standby_trials else []
        plain = measure_plain(args.plain_trials) if args.plain_trials else []
        print_report(args, reactions, teardowns, wakes, tick, load_at_start)
        if standby or plain:
            print_standby(wakes, standby, plain)
        for failure in system.failures:
            print(f"not 200: {failure}")
        print_logs(system.logs)
    finally:
        if watches is not None:
            watches.stop()
        if system is not None:
            system.http.close()
        progress("stopping the processes this run started ...")
        processes.stop_all()
        if not args.keep:
            from modelcluster.devcluster import controlplane
            from modelcluster.devcluster.config import ClusterConfig

            progress(f"stopping the cluster {args.cluster_name} ...")
            controlplane.down(ClusterConfig(name=args.cluster_name))
        progress(f"done; logs in {work}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=20, help="reaction trials and teardown trials (each)")
    parser.add_argument("--wake-trials", type=int, default=5, help="MiniLM wakes (a real runtime each), 0 to skip")
    parser.add_argument(
        "--standby-trials", type=int, default=3, help="MiniLM wakes that borrow a warm standby (0: no pool, skip)"
    )
    parser.add_argument("--plain-trials", type=int, default=1, help="T_plain measurements (fresh process), 0 to skip")
    parser.add_argument("--burst", type=int, default=8, help="concurrent requests per reaction trial")
    parser.add_argument("--react-delay", type=float, default=3.0, help="seconds the pod holds each burst request")
    parser.add_argument("--target-per-replica", type=float, default=2.0, help="targetPerReplica of reaction clusters")
    parser.add_argument("--teardown-timeout", type=int, default=5, help="spec.timeout of teardown and wake clusters")
    parser.add_argument("--teardown-parallel", type=int, default=4, help="teardown clusters measured side by side")
    parser.add_argument("--tick-clusters", type=int, default=1000, help="clusters in the tick CPU measurement")
    parser.add_argument("--tick-ticks", type=int, default=120, help="ticks timed (after one warm-up tick)")
    parser.add_argument(
        "--tick-changing", type=float, default=0.1, help="share of the clusters whose demand changes each second"
    )
    parser.add_argument("--tick-pods", type=int, default=1, help="ready pods per cluster in the tick measurement")
    parser.add_argument("--tick-only", action="store_true", help="only the tick CPU measurement (no cluster, no root)")
    parser.add_argument(
        "--smoke", action="store_true", help="the tick measurement at tiny sizes (20 clusters, 3 ticks): checks it runs"
    )
    parser.add_argument("--keep", action="store_true", help="leave the local cluster running")
    parser.add_argument("--cluster-name", default=CLUSTER_NAME, help="name of the local cluster the run starts")
    parser.add_argument("--serve-pod", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tick-json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.smoke:
        args.tick_only, args.tick_clusters, args.tick_ticks = True, 20, 3
    if args.serve_pod:
        serve_pod(int(os.environ.get("PORT", POD_PORT)))
    elif args.tick_json:
        print(
            json.dumps(
                tick_cpu(args.tick_clusters, args.tick_ticks, args.tick_pods, seed=1, changing=args.tick_changing)
            )
        )
    else:
        with _stop_on_sigterm():
            run(args)


if __name__ == "__main__":
    main()
