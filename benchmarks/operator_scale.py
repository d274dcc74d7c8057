"""Create many ModelClusters at once and measure the operator against a direct-apply ceiling.

Each run (``--runs``, default 3) starts a fresh local control plane named ``bench``, installs the CRD
and measures, side by side:

1. **The ceiling.** A plain client (kubernetes_asyncio, at most 32 requests in flight, like the
   ModelCluster creates below) server-side applies the Services and Deployments the operator would
   make for the same N ModelClusters (the operator's own pure builders: ``plan()``, then
   ``build_service`` / ``build_deployment`` with the same ``replicas``), into a namespace of their
   own, and takes the time until all of them are listed. Their owner references are left out: no
   ModelCluster owns them, and the garbage collector would delete them. The namespace is then
   deleted and the run waits until it is gone, before the operator starts (the operator's informers
   select these objects by their labels).
2. **The operator.** ``modelcluster operator`` runs as a real process; N ModelClusters are created
   concurrently (32 in flight) and the run takes the time until every Deployment exists and every
   status is set for its generation. Then it waits until the operator's writes stop (5 s without
   one), and the request counts, CPU and peak RSS (VmHWM) are read at that point.
3. **A restart.** The converged operator is stopped and started again; the run waits for
   ``/readyz``, for ``controller_runtime_reconcile_total >= N`` and for three autoscaler ticks, and
   counts the writes made in that window (target 0), checked against the objects themselves: which
   ModelClusters, Services and Deployments changed, and which field managers changed them.

Requests are the kube-apiserver's ``apiserver_request_total`` deltas (labels ``verb``, ``resource``,
``subresource``). The apiserver does not label a request with its client, so the operator's share is
taken by request kind. Counted as the operator's: ``APPLY``, ``PATCH`` and ``GET`` on deployments,
services, modelclusters, pods and persistentvolumeclaims (any subresource), plus ``POST`` on
events: the requests the operator makes outside its list-and-watch informers (applies of children and
statuses, reads of single objects, Events). Not counted: the kube-controller-manager's work for the
Deployments (``POST`` of ReplicaSets, ``PUT`` of ``deployments/status``, Endpoints and EndpointSlices),
the benchmark client's own ``POST`` of the ModelClusters and its ``LIST`` polling, and the informers'
few ``LIST``/``WATCH`` requests. The figure for all clients is printed beside it, with the largest
request kinds of the operator phase.

Restart writes are ``APPLY``/``PATCH``/``POST``/``PUT``/``DELETE`` on deployments (not their status
subresource, which the kube-controller-manager writes), services, modelclusters (any subresource),
pods and persistentvolumeclaims: nothing but the operator (its controller and its autoscaler, which
applies ``queueDepth`` to the status under its own field manager) writes those objects in that window
once the pods (with ``--desired`` above 0) have settled. The object check counts changes by any writer:
the kube-controller-manager still catching up sets the Deployments' revision annotation through
``deployments/status``, and a no-op apply (the same values again) is a write that changes no object.

After the runs, the ratio and the requests per cluster are printed as medians over the runs, beside
each run's value: one run on 2 busy cores ranges widely.

    python benchmarks/operator_scale.py --count 1000            # three runs, then their median
    python benchmarks/operator_scale.py --count 1000 --desired 1 --gpu-nodes 125   # with pods
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO, cast

import httpx
from kubernetes_asyncio import client as aclient
from kubernetes_asyncio import config as aconfig
from kubernetes_asyncio.client.rest import ApiException

from modelcluster.api.naming import object_name
from modelcluster.catalog import load_catalog
from modelcluster.devcluster import controlplane, system
from modelcluster.devcluster.config import ClusterConfig
from modelcluster.devcluster.pki import Pki
from modelcluster.devcluster.tools import ensure_tools
from modelcluster.operator.builders.children import with_spec_hash
from modelcluster.operator.builders.deployment import build_deployment
from modelcluster.operator.builders.plan import plan
from modelcluster.operator.builders.service import build_service
from modelcluster.operator.builders.workload import PodOptions

REPO = Path(__file__).resolve().parents[1]
GROUP, VERSION, PLURAL = "modelcluster.dev", "v1alpha1", "modelclusters"
CONCURRENCY = 32
POLL_S = 0.5
DIRECT_FIELD_MANAGER = "bench-direct-apply"
TARGET_RATIO = 2.0
TARGET_REQUESTS = 5.0
TARGET_RSS_MIB = 300.0
TARGET_RESTART_WRITES = 0
RESTART_TICKS = 3

Body = dict[str, Any]
#: (verb, resource, subresource) -> requests served.
Requests = dict[tuple[str, str, str], float]

WATCHED = frozenset({"deployments", "services", "modelclusters", "pods", "persistentvolumeclaims"})
WRITE_VERBS = frozenset({"APPLY", "PATCH", "POST", "PUT", "DELETE"})


def operator_request(verb: str, resource: str, subresource: str) -> bool:
    """A request kind the operator makes outside its informers (see the module docstring)."""
    return (verb in {"APPLY", "PATCH", "GET"} and resource in WATCHED) or (verb == "POST" and resource == "events")


def child_write(verb: str, resource: str, subresource: str) -> bool:
    """A write to an object the operator owns; the Deployment status subresource is the controller-manager's."""
    if verb not in WRITE_VERBS or resource not in WATCHED:
        return False
    return not (resource == "deployments" and subresource)


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc status")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


_REQUEST_LINE = re.compile(r"^apiserver_request_total\{([^}]*)\} ([0-9.e+]+)$", re.M)
_LABEL = re.compile(r'(\w+)="([^"]*)"')


def apiserver_requests(config: ClusterConfig) -> Requests:
    """The kube-apiserver's ``apiserver_request_total`` counters, summed by (verb, resource, subresource)."""
    context = controlplane.admin_ssl_context(Pki(config.state_dir / "pki"))
    state = controlplane.read_state(config)
    assert state is not None
    text = httpx.get(f"{state['server']}/metrics", verify=context, timeout=10).text
    counts: Requests = {}
    for labels, value in _REQUEST_LINE.findall(text):
        label = dict(_LABEL.findall(labels))
        key = (label.get("verb", ""), label.get("resource", ""), label.get("subresource", ""))
        counts[key] = counts.get(key, 0.0) + float(value)
    return counts


def delta(after: Requests, before: Requests) -> Requests:
    return {key: value - before.get(key, 0.0) for key, value in after.items() if value != before.get(key, 0.0)}


def only(requests: Requests, kind: Callable[[str, str, str], bool]) -> Requests:
    return {key: value for key, value in requests.items() if kind(*key)}


def count(requests: Requests, kind: Callable[[str, str, str], bool]) -> float:
    return sum(value for key, value in requests.items() if kind(*key))


def operator_metric(metrics_port: int, name: str) -> float:
    """A metric of the operator's ``/metrics``, summed over its labels."""
    text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
    pattern = rf"^{re.escape(name)}(?:\{{[^}}]*\}})? ([0-9.e+]+)$"
    return sum(float(value) for value in re.findall(pattern, text, re.M))


async def raw(request: Any) -> Body:
    response = await request
    try:
        body: Body = json.loads(await response.read())
    finally:
        response.release()
    return body


def cluster_body(index: int, desired: int) -> Body:
    model = f"bench-org/model-{index:05d}"
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelCluster",
        "metadata": {"name": object_name(model)},
        "spec": {"model": model, "task": "text-classification", "capacity": {"desired": desired, "max": 1}},
    }


def direct_children(namespace: str, count: int, desired: int) -> list[tuple[Body, Body]]:
    """The (Service, Deployment) the operator would apply for each benchmark ModelCluster, without owners."""
    catalog, options, now = load_catalog(), PodOptions(), datetime.now(UTC)
    children = []
    for index in range(count):
        body = cluster_body(index, desired)
        body["metadata"] |= {"namespace": namespace, "uid": str(uuid.uuid4()), "generation": 1}
        planned = plan(body, catalog, options, now)
        if planned.workload is None or planned.replicas is None:
            raise RuntimeError(f"no workload for {body['metadata']['name']}: {planned.problem}")
        service = with_spec_hash(build_service(planned.workload, options))
        deployment = with_spec_hash(build_deployment(planned.workload, options))
        deployment["spec"]["replicas"] = planned.replicas
        for child in (service, deployment):
            del child["metadata"]["ownerReferences"]
        children.append((service, deployment))
    return children


async def wait_until(done: Callable[[], Awaitable[bool]], started: float, limit_s: float, what: str) -> float:
    """Seconds since ``started`` when ``done()`` first holds, polled every :data:`POLL_S`."""
    while not await done():
        if time.monotonic() - started > limit_s:
            raise TimeoutError(f"{what}: not after {limit_s:.0f} s")
        await asyncio.sleep(POLL_S)
    return time.monotonic() - started


async def direct_apply(kubeconfig: Path, namespace: str, children: list[tuple[Body, Body]]) -> float:
    """Apply every child at :data:`CONCURRENCY` requests in flight; seconds until all are listed."""
    await aconfig.load_kube_config(config_file=str(kubeconfig))
    async with aclient.ApiClient() as api_client:
        core, apps = aclient.CoreV1Api(api_client), aclient.AppsV1Api(api_client)
        await core.create_namespace(cast(Any, {"metadata": {"name": namespace}}))
        limit = asyncio.Semaphore(CONCURRENCY)
        options: dict[str, Any] = {
            "field_manager": DIRECT_FIELD_MANAGER,
            "force": True,
            "_content_type": "application/apply-patch+yaml",
            "_preload_content": False,
        }

        async def one(service: Body, deployment: Body) -> None:
            name = service["metadata"]["name"]
            async with limit:
                await raw(core.patch_namespaced_service(name, namespace, service, **options))
                await raw(apps.patch_namespaced_deployment(name, namespace, deployment, **options))

        async def all_exist() -> bool:
            deployments = await raw(apps.list_namespaced_deployment(namespace, _preload_content=False))
            services = await raw(core.list_namespaced_service(namespace, _preload_content=False))
            return min(len(deployments["items"]), len(services["items"])) >= len(children)

        started = time.monotonic()
        await asyncio.gather(*(one(service, deployment) for service, deployment in children))
        return await wait_until(all_exist, started, 600, "direct apply")


async def delete_namespace(kubeconfig: Path, namespace: str) -> float:
    """Delete ``namespace`` and wait until it is gone; the seconds that took."""
    await aconfig.load_kube_config(config_file=str(kubeconfig))
    async with aclient.ApiClient() as api_client:
        core = aclient.CoreV1Api(api_client)
        await core.delete_namespace(namespace)

        async def gone() -> bool:
            try:
                await core.read_namespace(namespace)
            except ApiException as error:
                if error.status == 404:
                    return True
                raise
            return False

        return await wait_until(gone, time.monotonic(), 600, f"namespace {namespace} deletion")


async def converge(kubeconfig: Path, namespace: str, count: int, desired: int) -> dict[str, float]:
    """Create the ModelClusters; seconds until created, until all Deployments exist, until all statuses are set."""
    await aconfig.load_kube_config(config_file=str(kubeconfig))
    async with aclient.ApiClient() as api_client:
        await aclient.CoreV1Api(api_client).create_namespace(cast(Any, {"metadata": {"name": namespace}}))
        objects = aclient.CustomObjectsApi(api_client)
        apps = aclient.AppsV1Api(api_client)
        limit = asyncio.Semaphore(CONCURRENCY)

        async def create(index: int) -> None:
            async with limit:
                await objects.create_namespaced_custom_object(
                    GROUP, VERSION, namespace, PLURAL, cluster_body(index, desired)
                )

        seen: dict[str, float] = {}

        # Raw JSON, not the client's model classes: the poller must not steal the CPU it measures.
        async def converged() -> bool:
            if "deployments" not in seen:
                listing = await raw(apps.list_namespaced_deployment(namespace, _preload_content=False))
                if len(listing["items"]) >= count:
                    seen["deployments"] = time.monotonic() - started
            if "statuses" not in seen:
                listing = await raw(
                    objects.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, _preload_content=False)
                )
                done = sum(
                    1
                    for item in listing["items"]
                    if (item.get("status") or {}).get("status")
                    and item["status"].get("observedGeneration") == item["metadata"]["generation"]
                )
                if done >= count:
                    seen["statuses"] = time.monotonic() - started
            return "deployments" in seen and "statuses" in seen

        started = time.monotonic()
        await asyncio.gather(*(create(i) for i in range(count)))
        seen["created"] = time.monotonic() - started
        await wait_until(converged, started, 600, "operator convergence")
        return seen


def _owned_fingerprint(item: Body) -> str:
    """An object less what the controller-manager writes (status, its managed-fields entry, resourceVersion)."""
    metadata = dict(item["metadata"])
    metadata.pop("resourceVersion", None)
    metadata["managedFields"] = [
        entry for entry in metadata.get("managedFields") or [] if entry.get("subresource") != "status"
    ]
    return json.dumps({"metadata": metadata, "spec": item.get("spec")}, sort_keys=True)


def _managers(item: Body) -> dict[str, str]:
    """Each field manager's last write time, by manager and operation."""
    return {
        f"{entry.get('manager')}/{entry.get('operation')}/{entry.get('subresource', '')}": str(entry.get("time"))
        for entry in item["metadata"].get("managedFields") or []
    }


async def snapshot(kubeconfig: Path, namespace: str) -> dict[tuple[str, str], tuple[str, dict[str, str]]]:
    """(kind, name) -> (fingerprint, field managers) of the benchmark's ModelClusters, Services and Deployments."""
    await aconfig.load_kube_config(config_file=str(kubeconfig))
    async with aclient.ApiClient() as api_client:
        core, apps = aclient.CoreV1Api(api_client), aclient.AppsV1Api(api_client)
        custom = aclient.CustomObjectsApi(api_client)
        listings = {
            "ModelCluster": await raw(
                custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, _preload_content=False)
            ),
            "Service": await raw(core.list_namespaced_service(namespace, _preload_content=False)),
            "Deployment": await raw(apps.list_namespaced_deployment(namespace, _preload_content=False)),
        }
    shot = {}
    for kind, listing in listings.items():
        for item in listing["items"]:
            # The Deployment's status is the controller-manager's; the rest is compared whole.
            fingerprint = _owned_fingerprint(item) if kind == "Deployment" else item["metadata"]["resourceVersion"]
            shot[(kind, item["metadata"]["name"])] = (fingerprint, _managers(item))
    return shot


def changes(
    before: dict[tuple[str, str], tuple[str, dict[str, str]]], after: dict[tuple[str, str], tuple[str, dict[str, str]]]
) -> tuple[Counter[str], Counter[str]]:
    """Objects changed (or gone, or new) by kind, and the field managers whose entries changed."""
    kinds: Counter[str] = Counter()
    managers: Counter[str] = Counter()
    for key in before.keys() | after.keys():
        old, new = before.get(key), after.get(key)
        if old is not None and new is not None and old[0] == new[0]:
            continue
        kinds[key[0]] += 1
        old_managers, new_managers = (old[1] if old else {}), (new[1] if new else {})
        for manager in old_managers.keys() | new_managers.keys():
            if old_managers.get(manager) != new_managers.get(manager):
                managers[f"{key[0]}: {manager}"] += 1
    return kinds, managers


@dataclass
class Operator:
    """A running ``modelcluster operator`` process and its ports."""

    process: subprocess.Popen[bytes]
    metrics_port: int
    health_port: int

    @classmethod
    def start(cls, env: dict[str, str], log: TextIO) -> Operator:
        metrics_port, health_port = controlplane.free_port(), controlplane.free_port()
        process = subprocess.Popen(
            system.operator_argv(system.executable(), metrics_port=metrics_port, health_port=health_port),
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        return cls(process, metrics_port, health_port)

    def wait_ready(self, limit_s: float, log: Path) -> None:
        deadline = time.monotonic() + limit_s
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{self.health_port}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"operator did not become ready; see {log}")
            time.sleep(0.2)

    def metric(self, name: str) -> float:
        return operator_metric(self.metrics_port, name)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=60)


def settle(config: ClusterConfig, quiet_s: float, limit_s: float) -> float:
    """Wait until no write to the operator's objects for ``quiet_s``; the seconds waited."""
    started = time.monotonic()
    last = count(apiserver_requests(config), child_write)
    quiet_since = started
    while time.monotonic() - quiet_since < quiet_s:
        if time.monotonic() - started > limit_s:
            print(f"  writes still going after {limit_s:.0f} s; going on", flush=True)
            break
        time.sleep(1.0)
        now = count(apiserver_requests(config), child_write)
        if now != last:
            last, quiet_since = now, time.monotonic()
    return time.monotonic() - started


def wait_for(done: Callable[[], bool], limit_s: float, what: str) -> float:
    started = time.monotonic()
    while not done():
        if time.monotonic() - started > limit_s:
            raise TimeoutError(f"{what}: not after {limit_s:.0f} s")
        time.sleep(POLL_S)
    return time.monotonic() - started


def top(requests: Requests, limit: int) -> str:
    rows = sorted(requests.items(), key=lambda item: -item[1])[:limit]
    return ", ".join(
        f"{verb} {resource}{'/' + sub if sub else ''} {value:.0f}" for (verb, resource, sub), value in rows
    )


@dataclass(frozen=True)
class RunResult:
    ratio: float
    requests_per_cluster: float
    ceiling_s: float
    converged_s: float


def summarise(results: list[RunResult]) -> None:
    """The figures the targets are judged on: the median over independent runs, and each run's value."""
    ratios = [result.ratio for result in results]
    requests = [result.requests_per_cluster for result in results]
    ratio, per_cluster = statistics.median(ratios), statistics.median(requests)
    print(f"\nmedian of {len(results)} runs")
    print(f"{'figure':<50} {'median':>12} {'target':>10} {'measured/target':>16}  runs")
    print(
        f"{'operator time / direct-apply time':<50} {ratio:>12.2f} {TARGET_RATIO:>10.0f} "
        f"{ratio / TARGET_RATIO:>16.2f}  {', '.join(f'{value:.2f}' for value in ratios)}"
    )
    print(
        f"{'apiserver requests per cluster (operator)':<50} {per_cluster:>12.2f} {TARGET_REQUESTS:>10.0f} "
        f"{per_cluster / TARGET_REQUESTS:>16.2f}  {', '.join(f'{value:.2f}' for value in requests)}"
    )
    print(
        f"{'direct apply / operator converged (s)':<50} {'':>12} {'':>10} {'':>16}  "
        + ", ".join(f"{result.ceiling_s:.1f}/{result.converged_s:.1f}" for result in results)
    )


def measure(args: argparse.Namespace) -> RunResult:
    """One run on a fresh control plane: the ceiling, the operator, its restart; prints the run's table."""
    n = args.count
    ensure_tools()
    config = ClusterConfig(name=args.cluster, gpu_nodes=args.gpu_nodes, cpu_nodes=0)
    controlplane.down(config)
    kubeconfig = controlplane.up(config)
    signing_key = system.pod_auth_key(config.state_dir / "pod-auth-key")
    env = dict(os.environ, KUBECONFIG=str(kubeconfig), **system.pod_auth_env(signing_key))
    kubectl = str(ensure_tools().kubectl)

    def run_kubectl(*command: str, stdin: str | None = None) -> None:
        subprocess.run([kubectl, *command], input=stdin, env=env, check=True, capture_output=True, text=True)

    system.install(run_kubectl, pod_auth=signing_key)
    log = Path(tempfile.gettempdir()) / "modelcluster-bench-operator.log"
    suffix = uuid.uuid4().hex[:6]

    try:
        # 1. The ceiling: the same children applied directly.
        direct_namespace = f"bench-direct-{suffix}"
        children = direct_children(direct_namespace, n, args.desired)
        direct_before = apiserver_requests(config)
        ceiling = asyncio.run(direct_apply(kubeconfig, direct_namespace, children))
        direct_requests = count(delta(apiserver_requests(config), direct_before), lambda *_: True)
        print(f"direct apply: {2 * n} objects listed after {ceiling:.1f} s", flush=True)
        deleted = asyncio.run(delete_namespace(kubeconfig, direct_namespace))
        print(f"direct-apply namespace deleted in {deleted:.1f} s", flush=True)

        # 2. The operator.
        with log.open("w") as output:
            operator = Operator.start(env, output)
        try:
            operator.wait_ready(90, log)
            idle_rss = peak_rss_mib(operator.process.pid)
            reconciles_before = operator.metric("controller_runtime_reconcile_total")
            cpu_before, before = cpu_seconds(operator.process.pid), apiserver_requests(config)
            namespace = f"bench-{suffix}"
            times = asyncio.run(converge(kubeconfig, namespace, n, args.desired))
            converged = max(times["deployments"], times["statuses"])
            print(f"operator: converged after {converged:.1f} s", flush=True)
            settled = settle(config, quiet_s=5, limit_s=120)
            reconciles = operator.metric("controller_runtime_reconcile_total") - reconciles_before
            operator_cpu = cpu_seconds(operator.process.pid) - cpu_before
            phase = delta(apiserver_requests(config), before)
            rss = peak_rss_mib(operator.process.pid)

            # 3. A restart of the converged operator.
            objects_before = asyncio.run(snapshot(kubeconfig, namespace))
            restart_before = apiserver_requests(config)
            restart_started = time.monotonic()
        finally:
            operator.stop()
        with log.open("a") as output:
            output.write("\n===== restart =====\n")
            output.flush()
            operator = Operator.start(env, output)
        try:
            operator.wait_ready(90, log)
            ready_s = time.monotonic() - restart_started
            wait_for(
                lambda: (
                    operator.metric("controller_runtime_reconcile_total") >= n
                    and operator.metric("modelcluster_autoscaler_tick_seconds_count") >= RESTART_TICKS
                ),
                300,
                "restarted operator's reconciles and ticks",
            )
            restart_s = time.monotonic() - restart_started
            restart = delta(apiserver_requests(config), restart_before)
            objects_after = asyncio.run(snapshot(kubeconfig, namespace))
            restart_rss = peak_rss_mib(operator.process.pid)
        finally:
            operator.stop()
    finally:
        if not args.keep_cluster:
            controlplane.down(config)

    restart_writes = count(restart, child_write)
    changed_kinds, changed_managers = changes(objects_before, objects_after)
    operator_requests = count(phase, operator_request)
    all_requests = count(phase, lambda *_: True)
    ratio = converged / ceiling
    print(
        f"\nModelClusters: {n} (desired {args.desired}), {args.gpu_nodes} GPU nodes, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f}; operator log {log}"
    )
    print(f"operator phase, largest request kinds: {top(phase, 12)}")
    print(f"operator phase, the operator's request kinds: {top(only(phase, operator_request), 12)}")
    print(f"restart window: {top(restart, 12) or 'no requests'}")
    print(f"restart window, writes: {top(only(restart, child_write), 12) or 'none'}")
    print(
        f"restart, objects changed: {dict(changed_kinds) or 'none'}"
        + (f"; by field manager: {dict(changed_managers)}" if changed_managers else "")
    )
    rows = [
        ("direct apply: all Services and Deployments exist", f"{ceiling:.1f} s", "", ""),
        ("direct apply: requests per cluster (all clients)", f"{direct_requests / n:.1f}", "", ""),
        ("operator: all creates accepted", f"{times['created']:.1f} s", "", ""),
        ("operator: all Deployments exist", f"{times['deployments']:.1f} s", "", ""),
        ("operator: every status set (this generation)", f"{times['statuses']:.1f} s", "", ""),
        ("operator time / direct-apply time", f"{ratio:.2f}", f"{TARGET_RATIO:.0f}", f"{ratio / TARGET_RATIO:.2f}"),
        ("operator: writes stopped (after converged)", f"{settled:.1f} s", "", ""),
        ("reconciles per cluster", f"{reconciles / n:.2f}", "", ""),
        (
            "apiserver requests per cluster (operator)",
            f"{operator_requests / n:.2f}",
            f"{TARGET_REQUESTS:.0f}",
            f"{operator_requests / n / TARGET_REQUESTS:.2f}",
        ),
        ("apiserver requests per cluster (all clients)", f"{all_requests / n:.1f}", "", ""),
        ("operator CPU per cluster", f"{1000 * operator_cpu / n:.1f} ms", "", ""),
        ("operator CPU busy (of one core, until converged)", f"{100 * operator_cpu / converged:.0f} %", "", ""),
        ("operator RSS idle", f"{idle_rss:.0f} MiB", "", ""),
        ("operator peak RSS", f"{rss:.0f} MiB", f"{TARGET_RSS_MIB:.0f} MiB", f"{rss / TARGET_RSS_MIB:.2f}"),
        ("restart: ready", f"{ready_s:.1f} s", "", ""),
        ("restart: all reconciled, 3 autoscaler ticks", f"{restart_s:.1f} s", "", ""),
        ("restart: peak RSS", f"{restart_rss:.0f} MiB", "", ""),
        ("restart: objects changed (any writer)", f"{sum(changed_kinds.values())}", "", ""),
        (
            "restart writes",
            f"{restart_writes:.0f}",
            f"{TARGET_RESTART_WRITES}",
            "ok" if restart_writes <= TARGET_RESTART_WRITES else "over",
        ),
    ]
    print(f"\n{'figure':<50} {'measured':>12} {'target':>10} {'measured/target':>16}")
    for name, value, target, measured_ratio in rows:
        print(f"{name:<50} {value:>12} {target:>10} {measured_ratio:>16}")
    return RunResult(ratio=ratio, requests_per_cluster=operator_requests / n, ceiling_s=ceiling, converged_s=converged)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--desired", type=int, default=0, help="replicas per cluster (0: no pods, status stopped)")
    parser.add_argument("--gpu-nodes", type=int, default=4)
    parser.add_argument("--keep-cluster", action="store_true", help="leave the bench cluster running")
    parser.add_argument("--cluster", default="bench", help="name of the fresh local cluster the run starts")
    parser.add_argument("--smoke", action="store_true", help="3 ModelClusters, 1 GPU node: checks the script runs")
    parser.add_argument(
        "--runs",
        type=int,
        default=None,
        help="independent runs, each on a fresh control plane, and their medians (default 3; 1 with --smoke)",
    )
    args = parser.parse_args()
    if args.smoke:
        args.count, args.gpu_nodes = 3, 1
    if args.runs is None:
        args.runs = 1 if args.smoke else 3
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    results = []
    for index in range(args.runs):
        print(f"\n=== run {index + 1} of {args.runs} ===", flush=True)
        results.append(measure(args))
    if args.runs > 1:
        summarise(results)


if __name__ == "__main__":
    main()
