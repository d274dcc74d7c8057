"""What the gateway adds to a request, beside nginx, Ray Serve and a bare aiohttp proxy, in one run.

One trivial upstream (a pod of the local control plane answering ``POST /run``) is reached
five ways with the same load generators, same body and same headers:

- directly, at the pod's address;
- through the gateway (``modelcluster gateway``: keys, routing, body check and metrics on, usage ledger off);
- through a second gateway with its usage ledger on (an SQLite file; one row per request, written in batches);
- through nginx (Debian's package, 1 worker, ``proxy_pass`` with an upstream keepalive pool);
- through a bare aiohttp proxy (checks the Authorization header, forwards with one ClientSession);
- through Ray Serve's HTTP proxy in front of a trivial deployment (answering itself, no pod).

Per round and path: the maximum sustained throughput (hey, closed loop, 32 connections, only
2xx counted) and the latency at a constant rate (vegeta, open loop); a path whose maximum is
below 1.1 times the rate is reported as over capacity instead. Added latency is the path's minus the
direct path's of the same round. Peers are installed on first use into
``~/.cache/modelcluster/bench`` (vegeta and hey with ``go install``, nginx with apt-get,
Ray Serve into its own virtual environment), never into the project's environment.

    sudo .venv/bin/python benchmarks/gateway_overhead.py              # as root: pods need network namespaces
    .venv/bin/python benchmarks/gateway_overhead.py --duration 10 --rounds 2 --rate 500 --skip-ray --keep
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SCRIPT = Path(__file__).resolve()
CLUSTER_NAME = "gwbench"
TENANT = "bench"
KEY_NAMESPACE = "modelcluster-system"
IMAGE = "modelcluster.dev/bench/trivial:1"
MODEL = "sentence-transformers/all-MiniLM-L6-v2"
BODY = b'{"text": "hello"}'
UPSTREAM_BODY = b'{"error": null, "output": [0.1, 0.2]}'
UPSTREAM_PORT = 8000

VEGETA = ("github.com/tsenart/vegeta/v12", "v12.13.0", "vegeta")
HEY = ("github.com/rakyll/hey", "v0.1.4", "hey")
RAY_VERSION = "2.60.0"
RAY_MAX_ONGOING = 32  # the gateway's default in-flight limit per pod
MAX_CONNECTIONS = 32
MAX_SECONDS = 6
TARGET_CPU_OF_BARE = 1.15

TARGET_ADDED_P50_MS = 1.0
TARGET_ADDED_P99_MS = 5.0
TARGET_SHARE_OF_NGINX = 0.60
GOOD_SHARE_OF_BARE = 0.90

DIRECT, GATEWAY, NGINX, BARE, RAY = "direct", "gateway", "nginx", "bare aiohttp proxy", "Ray Serve proxy"
LEDGER = "gateway, ledger on"
PATH_ORDER = (DIRECT, GATEWAY, LEDGER, NGINX, BARE, RAY)
TARGET_LEDGER_MAX_SHARE = 0.95
TARGET_LEDGER_ADDED_P50_MS = 0.2

STARTED = time.monotonic()


def progress(message: str) -> None:
    print(f"[{time.monotonic() - STARTED:6.1f}s] {message}", flush=True)


def cache_dir() -> Path:
    root = os.environ.get("MODELCLUSTER_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "modelcluster") / "bench"


def free_port() -> int:
    from modelcluster.devcluster.controlplane import free_port as pick

    return pick()


def test_support() -> ModuleType:
    """The tests' support package (``tests/support``: the fake of the Kubernetes layer, polling), on first use.

    Imported late: the pod commands run this file with a bare ``python3`` that has no project installed.
    """
    tests = str(REPO / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    return importlib.import_module("support")


def wait_for(check: Callable[[], bool], timeout: float, what: str, interval: float = 0.3) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval)
    raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")


def http_status(method: str, url: str, headers: dict[str, str] | None = None, body: bytes | None = None) -> int:
    import httpx

    try:
        return httpx.request(method, url, headers=headers, content=body, timeout=5.0).status_code
    except httpx.HTTPError:
        return 0


# --- the servers this file runs itself -------------------------------------------------------------------------


def serve_upstream(port: int) -> None:
    """The trivial model pod: ``POST /run`` answers a small JSON body, ``GET /health`` 200 (aiohttp on uvloop)."""
    import uvloop
    from aiohttp import web

    async def run(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=UPSTREAM_BODY, content_type="application/json")

    async def health(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/run", run)
    app.router.add_get("/health", health)
    web.run_app(app, host="0.0.0.0", port=port, access_log=None, print=None, loop=uvloop.new_event_loop())


def serve_bare_proxy(port: int, upstream: str, authorization: str) -> None:
    """The least a Python proxy does: compare the Authorization header, forward the body with one session."""
    import aiohttp
    from aiohttp import web

    session_key: web.AppKey[aiohttp.ClientSession] = web.AppKey("session", aiohttp.ClientSession)

    async def session_context(app: web.Application) -> Any:
        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=60)
        async with aiohttp.ClientSession(connector=connector, auto_decompress=False) as session:
            app[session_key] = session
            yield

    async def forward(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != authorization:
            return web.json_response({"error": "unauthorized", "output": None}, status=401)
        body = await request.read()
        headers = {"Content-Type": "application/json"}
        async with request.app[session_key].post(upstream, data=body, headers=headers) as answer:
            payload = await answer.read()
            content_type = answer.headers.get("Content-Type", "application/json")
            return web.Response(body=payload, status=answer.status, headers={"Content-Type": content_type})

    app = web.Application()
    app.cleanup_ctx.append(session_context)
    app.router.add_post("/{tail:.*}", forward)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


RAY_APP = """
import signal
import sys
import threading

import ray
from ray import serve
from starlette.requests import Request
from starlette.responses import Response

BODY = {body!r}


@serve.deployment(max_ongoing_requests={max_ongoing})
class Trivial:
    async def __call__(self, request: Request) -> Response:
        await request.body()
        return Response(BODY, media_type="application/json")


def main() -> None:
    port = int(sys.argv[1])
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        _node_ip_address="127.0.0.1",
        object_store_memory=200 * 1024 * 1024,
    )
    serve.start(http_options={{"host": "127.0.0.1", "port": port}})
    serve.run(Trivial.bind(), name="trivial", route_prefix="/")
    print("ready", flush=True)
    stop.wait()
    serve.shutdown()
    ray.shutdown()


main()
"""


# --- peers: installed on first use into the cache --------------------------------------------------------------


class Unavailable(Exception):
    """A peer could not be installed or started; the reason is the message."""


def go_tool(module: str, version: str, binary: str, *, install: bool = True) -> Path:
    """The load generator ``binary`` of ``module@version``, built with ``go install`` when missing and ``install``."""
    directory = cache_dir() / "bin"
    target = directory / f"{binary}-{version}"
    if target.is_file():
        return target
    if not install:
        raise Unavailable(f"{binary} {version} is not in {directory}: `make bench-tools` installs it")
    go = shutil.which("go") or "/usr/local/go/bin/go"
    if not Path(go).exists():
        raise Unavailable("no Go toolchain to build the load generators")
    progress(f"installing {binary} {version} (go install {module}@{version}) ...")
    build = cache_dir() / "gobin"
    build.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, GOBIN=str(build), GOTOOLCHAIN="local", CGO_ENABLED="0")
    done = subprocess.run([go, "install", f"{module}@{version}"], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise Unavailable(f"go install {module}@{version} failed: {done.stderr.strip()[-800:]}")
    directory.mkdir(parents=True, exist_ok=True)
    (build / binary).rename(target)
    progress(f"installed {target}")
    return target


def nginx_installed() -> Path | None:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    return Path(found) if found else None


def nginx_binary() -> Path:
    found = nginx_installed()
    if found:
        return found
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    progress("installing nginx from Debian (apt-get update; apt-get install nginx-light) ...")
    subprocess.run(["apt-get", "update"], env=env, capture_output=True, check=False)
    for package in ("nginx-light", "nginx"):
        done = subprocess.run(
            ["apt-get", "install", "-y", "--no-install-recommends", package], env=env, capture_output=True, text=True
        )
        if done.returncode == 0 and Path("/usr/sbin/nginx").exists():
            progress(f"installed Debian's {package}")
            return Path("/usr/sbin/nginx")
    raise Unavailable(f"apt-get could not install nginx: {done.stderr.strip()[-400:]}")


def ray_python() -> Path:
    venv = cache_dir() / f"ray-{RAY_VERSION}"
    python = venv / "bin" / "python"
    marker = venv / ".installed"
    if marker.is_file():
        return python
    progress(f"installing ray[serve]=={RAY_VERSION} into its own environment {venv} (a few minutes) ...")
    if venv.exists():
        shutil.rmtree(venv)
    base = getattr(sys, "_base_executable", sys.executable)
    for argv in (
        [base, "-m", "venv", str(venv)],
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", f"ray[serve]=={RAY_VERSION}"],
    ):
        done = subprocess.run(argv, capture_output=True, text=True)
        if done.returncode != 0:
            raise Unavailable(f"{' '.join(argv[:4])} failed: {done.stderr.strip()[-800:]}")
    marker.write_text(RAY_VERSION)
    progress(f"installed ray[serve]=={RAY_VERSION}")
    return python


# --- processes -----------------------------------------------------------------------------------------------


@dataclass
class Processes:
    """Processes this run started, stopped in reverse order (each in its own process group)."""

    started: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)

    def start(
        self, name: str, argv: list[str], log: Path, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        with log.open("ab") as output:
            process = subprocess.Popen(argv, stdout=output, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self.started.append((name, process))
        return process

    def pids(self) -> dict[str, int]:
        """Process id of each started process by name."""
        return {name: process.pid for name, process in self.started}

    def stop_all(self) -> None:
        for name, process in reversed(self.started):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    progress(f"{name} did not stop in 30 s; killing its process group")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)  # leftovers of its group (nginx workers, ray's processes)
            process.wait()
        self.started.clear()


def tree_cpu_seconds(root: int) -> float:
    """User plus system CPU time of process ``root`` and its live descendants (nginx's worker, Ray's workers)."""
    parents: dict[int, int] = {}
    ticks: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        pid = int(stat.parent.name)
        parents[pid], ticks[pid] = int(fields[1]), int(fields[11]) + int(fields[12])
    children: dict[int, list[int]] = {}
    for pid, parent in parents.items():
        children.setdefault(parent, []).append(pid)
    total, pending = 0, [root]
    while pending:
        pid = pending.pop()
        total += ticks.get(pid, 0)
        pending.extend(children.get(pid, []))
    return total / os.sysconf("SC_CLK_TCK")


def alive(process: subprocess.Popen[bytes], name: str, log: Path) -> None:
    if process.poll() is not None:
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        raise RuntimeError(f"{name} exited with {process.returncode}; log {log}:\n{tail}")


def nginx_config(work: Path, port: int, upstream: str) -> Path:
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (work / sub).mkdir(parents=True, exist_ok=True)
    config = work / "nginx.conf"
    config.write_text(
        f"""worker_processes 1;
daemon off;
user root;
pid {work}/nginx.pid;
error_log {work}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {work}/body;
    proxy_temp_path {work}/proxy;
    fastcgi_temp_path {work}/fastcgi;
    uwsgi_temp_path {work}/uwsgi;
    scgi_temp_path {work}/scgi;
    upstream pod {{
        server {upstream};
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://pod;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""
    )
    return config


# --- the system under test -----------------------------------------------------------------------------------


@dataclass
class System:
    kubeconfig: Path
    gateway_url: str
    gateway_log: Path
    key: str
    pod_ip: str


def write_inputs(work: Path) -> tuple[Path, Path]:
    import yaml

    pod_commands = work / "pod-commands.yaml"
    pod_commands.write_text(
        yaml.safe_dump({IMAGE: {"command": ["python3", str(SCRIPT), "--serve-upstream"]}}, sort_keys=False)
    )
    catalog = work / "catalog.yaml"
    catalog.write_text(yaml.safe_dump({"families": {"text": {"image": IMAGE}}}))
    return pod_commands, catalog


def kubectl(kubeconfig: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    from modelcluster.devcluster.tools import ensure_tools

    argv = [str(ensure_tools().kubectl), f"--kubeconfig={kubeconfig}", *args]
    return subprocess.run(argv, capture_output=True, text=True, check=check)


def ready_pod_ip(kubeconfig: Path) -> str | None:
    listing = json.loads(kubectl(kubeconfig, "get", "pods", "-n", TENANT, "-o", "json").stdout)
    for pod in listing["items"]:
        status = pod.get("status") or {}
        ready = any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions") or [])
        if ready and status.get("podIP"):
            return str(status["podIP"])
    return None


def start_system(work: Path, processes: Processes, cluster: str = CLUSTER_NAME) -> System:
    import httpx

    from modelcluster.devcluster import controlplane, system
    from modelcluster.devcluster.config import ClusterConfig, load_pod_commands
    from modelcluster.devcluster.tools import ensure_tools

    pod_commands, catalog = write_inputs(work)
    ensure_tools()
    config = ClusterConfig(name=cluster, pod_commands=load_pod_commands(pod_commands))
    if controlplane.running(config):
        progress(f"stopping the running cluster {cluster} (it may hold other pod commands)")
        controlplane.down(config)
    progress(f"starting the local control plane {cluster} ...")
    kubeconfig = controlplane.up(config)
    progress("control plane ready; installing the CRD")

    def run_kubectl(*command: str, stdin: str | None = None) -> None:
        argv = [str(ensure_tools().kubectl), f"--kubeconfig={kubeconfig}", *command]
        done = subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(command)}: {done.stderr.strip()}")

    signing_key = system.pod_auth_key(config.state_dir / "pod-auth-key")
    system.install(run_kubectl, namespaces=(KEY_NAMESPACE,), pod_auth=signing_key)
    env = dict(os.environ, KUBECONFIG=str(kubeconfig), **system.pod_auth_env(signing_key))
    cli = system.executable()

    health, metrics = free_port(), free_port()
    operator_log = work / "operator.log"
    operator = processes.start(
        "operator",
        system.operator_argv(
            cli,
            metrics_port=metrics,
            health_port=health,
            lease_namespace=None,
            extra=[f"--catalog={catalog}"],
        ),
        operator_log,
        env,
    )

    def operator_ready() -> bool:
        alive(operator, "the operator", operator_log)
        return http_status("GET", f"http://127.0.0.1:{health}/readyz") == 200

    progress("waiting for the operator ...")
    wait_for(operator_ready, 90, "the operator to become ready")

    port = free_port()
    gateway_url = f"http://127.0.0.1:{port}"
    gateway_log = work / "gateway.log"
    gateway = processes.start(
        "gateway",
        system.gateway_argv(
            cli,
            port=port,
            metrics_port=free_port(),
            host="127.0.0.1",
            key_namespace=KEY_NAMESPACE,
            extra=[f"--catalog={catalog}", "--hold-timeout=120"],
        ),
        gateway_log,
        {**env, "MODELCLUSTER_GATEWAY_LEDGER_URL": ""},  # the ledger off; LEDGER measures it on
    )

    def gateway_ready() -> bool:
        alive(gateway, "the gateway", gateway_log)
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
    headers = {"Authorization": f"Key {key}", "Content-Type": "application/json"}
    model_url = f"{gateway_url}/models/v2/{MODEL}"
    progress("waiting for the gateway to learn the key ...")
    wait_for(lambda: http_status("GET", f"{gateway_url}/models/v2/list/tasks", headers) == 200, 30, "the key")
    answer = httpx.put(model_url, headers=headers, json={"capacity": {"min": 1, "desired": 1, "max": 1}}, timeout=30)
    if answer.status_code not in (200, 201):
        raise RuntimeError(f"PUT {model_url}: {answer.status_code} {answer.text}")
    progress(f"ModelCluster for {MODEL} created; waiting for its pod to answer through the gateway ...")

    def through_gateway() -> bool:
        alive(gateway, "the gateway", gateway_log)
        try:
            return httpx.post(model_url, headers=headers, content=BODY, timeout=130).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(through_gateway, 240, "a 200 answer through the gateway", interval=1.0)
    # The gateway routes to a starting pod on its first healthy answer, before the kubelet marks it Ready.
    wait_for(lambda: ready_pod_ip(kubeconfig) is not None, 60, "the pod that answered to turn Ready")
    pod_ip = ready_pod_ip(kubeconfig)
    if pod_ip is None:
        raise RuntimeError("the gateway answered but no pod is Ready")
    progress(f"pod ready at {pod_ip}:{UPSTREAM_PORT}")
    return System(kubeconfig, gateway_url, gateway_log, key, pod_ip)


def start_ledger_gateway(work: Path, processes: Processes, system: System) -> str:
    """A second gateway over the same cluster and keys, with its usage ledger on (an SQLite file in ``work``)."""
    from modelcluster.devcluster import system as devsystem

    _, catalog = write_inputs(work)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = work / "gateway-ledger.log"
    # The same signing key as the first gateway's (the cluster's, beside its kubeconfig): the pods answer only it.
    signing_key = devsystem.pod_auth_key(system.kubeconfig.parent / "pod-auth-key")
    env = dict(
        os.environ,
        KUBECONFIG=str(system.kubeconfig),
        MODELCLUSTER_GATEWAY_LEDGER_URL=f"sqlite+aiosqlite:///{work / 'usage.sqlite'}",
        **devsystem.pod_auth_env(signing_key),
    )
    argv = devsystem.gateway_argv(
        devsystem.executable(),
        port=port,
        metrics_port=free_port(),
        host="127.0.0.1",
        key_namespace=KEY_NAMESPACE,
        extra=[f"--catalog={catalog}", "--hold-timeout=120"],
    )
    process = processes.start(LEDGER, argv, log, env)
    headers = {"Authorization": f"Key {system.key}"}

    def ready() -> bool:
        alive(process, "the gateway with its ledger", log)
        return http_status("POST", f"{url}/models/v2/{MODEL}", headers, BODY) == 200

    progress("waiting for the gateway with its ledger on ...")
    wait_for(ready, 60, "the gateway with its ledger to answer")
    return f"{url}/models/v2/{MODEL}"


def start_nginx(work: Path, processes: Processes, pod: str) -> str:
    binary = nginx_binary()
    version = subprocess.run([str(binary), "-v"], capture_output=True, text=True).stderr.strip()
    port = free_port()
    directory = work / "nginx"
    config = nginx_config(directory, port, pod)
    log = work / "nginx.log"
    process = processes.start("nginx", [str(binary), "-p", str(directory), "-c", str(config)], log)
    url = f"http://127.0.0.1:{port}/run"

    def ready() -> bool:
        alive(process, "nginx", log)
        return http_status("POST", url, {"Content-Type": "application/json"}, BODY) == 200

    wait_for(ready, 30, "nginx")
    progress(f"nginx ready ({version})")
    return url


def start_bare_proxy(work: Path, processes: Processes, pod: str, key: str) -> str:
    port = free_port()
    log = work / "bare-proxy.log"
    argv = [sys.executable, str(SCRIPT), "--serve-bare-proxy", f"--port={port}", f"--upstream=http://{pod}/run"]
    process = processes.start(BARE, argv, log, dict(os.environ, BENCH_AUTHORIZATION=f"Key {key}"))
    url = f"http://127.0.0.1:{port}/run"
    headers = {"Authorization": f"Key {key}", "Content-Type": "application/json"}

    def ready() -> bool:
        alive(process, "the bare proxy", log)
        return http_status("POST", url, headers, BODY) == 200

    wait_for(ready, 30, "the bare aiohttp proxy")
    progress("bare aiohttp proxy ready")
    return url


def start_ray(work: Path, processes: Processes) -> str:
    python = ray_python()
    port = free_port()
    app = work / "ray_app.py"
    app.write_text(RAY_APP.format(body=UPSTREAM_BODY, max_ongoing=RAY_MAX_ONGOING))
    log = work / "ray.log"
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_TMPDIR=str(work / "ray-tmp"))
    env.pop("VIRTUAL_ENV", None)
    (work / "ray-tmp").mkdir(exist_ok=True)
    progress("starting Ray Serve (a local Ray instance, its proxy and one trivial replica) ...")
    process = processes.start(RAY, [str(python), str(app), str(port)], log, env)
    url = f"http://127.0.0.1:{port}/run"

    def ready() -> bool:
        if process.poll() is not None:
            tail = log.read_text(errors="replace")[-1500:]
            raise Unavailable(f"the Ray Serve app exited with {process.returncode}: {tail}")
        return http_status("POST", url, {"Content-Type": "application/json"}, BODY) == 200

    try:
        wait_for(ready, 180, "Ray Serve", interval=1.0)
    except RuntimeError as error:
        raise Unavailable(str(error)) from error
    progress(f"Ray Serve {RAY_VERSION} ready")
    return url


# --- measurements ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RateResult:
    p50_ms: float
    p99_ms: float
    requests: int
    ok: int
    codes: dict[str, int]
    errors: list[str]


@dataclass(frozen=True)
class MaxResult:
    ok_per_s: float
    total: int
    ok: int
    codes: dict[str, int]
    errors: list[str]
    cpu_us_per_ok: float | None = None


def targets_file(work: Path, name: str, url: str, key: str) -> Path:
    body = work / "body.json"
    body.write_bytes(BODY)
    target = work / f"targets-{re.sub(r'[^a-z0-9]+', '-', name.lower())}.txt"
    target.write_text(f"POST {url}\nAuthorization: Key {key}\nContent-Type: application/json\n@{body}\n")
    return target


def is_ok(code: str) -> bool:
    return code.isdigit() and 200 <= int(code) < 300


def vegeta_rate(vegeta: Path, targets: Path, rate: int, seconds: float, output: Path) -> RateResult:
    subprocess.run(
        [
            str(vegeta),
            "attack",
            f"-targets={targets}",
            "-format=http",
            f"-rate={rate}/1s",
            f"-duration={seconds}s",
            "-timeout=10s",
            f"-output={output}",
        ],
        check=True,
        capture_output=True,
    )
    report = json.loads(
        subprocess.run([str(vegeta), "report", "-type=json", str(output)], check=True, capture_output=True).stdout
    )
    output.unlink()
    codes = {str(code): int(count) for code, count in (report.get("status_codes") or {}).items()}
    latencies = report["latencies"]
    return RateResult(
        p50_ms=latencies["50th"] / 1e6,
        p99_ms=latencies["99th"] / 1e6,
        requests=int(report["requests"]),
        ok=sum(count for code, count in codes.items() if is_ok(code)),
        codes=codes,
        errors=list(report.get("errors") or [])[:5],
    )


def hey_max(hey: Path, url: str, key: str, seconds: float = MAX_SECONDS) -> MaxResult:
    argv = [
        str(hey),
        "-z",
        f"{seconds:g}s",
        "-c",
        str(MAX_CONNECTIONS),
        "-m",
        "POST",
        "-T",
        "application/json",
        "-H",
        f"Authorization: Key {key}",
        "-d",
        BODY.decode(),
        url,
    ]
    text = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    total = re.search(r"Total:\s+([0-9.]+) secs", text)
    if total is None:
        raise RuntimeError(f"no summary in hey's output:\n{text[-1000:]}")
    total_s = float(total.group(1))
    codes = {code: int(count) for code, count in re.findall(r"\[(\d{3})\]\s+(\d+) responses", text)}
    errors_block = text.split("Error distribution:", 1)[1] if "Error distribution:" in text else ""
    errors = re.findall(r"\[(\d+)\]\s+(.+)", errors_block)
    ok = sum(count for code, count in codes.items() if is_ok(code))
    answered = sum(codes.values()) + sum(int(count) for count, _ in errors)
    return MaxResult(ok / total_s, answered, ok, codes, [f"{count}x {message[:160]}" for count, message in errors[:5]])


def settle(url: str, key: str, timeout: float = 30.0) -> None:
    """Wait until a path answers single requests quickly again (after it was driven past capacity)."""
    import httpx

    headers = {"Authorization": f"Key {key}", "Content-Type": "application/json"}
    deadline = time.monotonic() + timeout
    quick = 0
    while quick < 3 and time.monotonic() < deadline:
        started = time.monotonic()
        try:
            httpx.post(url, headers=headers, content=BODY, timeout=10)
        except httpx.HTTPError:
            quick = 0
            continue
        quick = quick + 1 if time.monotonic() - started < 0.05 else 0


# --- the report --------------------------------------------------------------------------------------------------


@dataclass
class PathResults:
    rate: list[RateResult | None] = field(default_factory=list)
    maximum: list[MaxResult] = field(default_factory=list)
    skipped: str | None = None


def span(values: list[float], fmt: str, unit: str = "") -> str:
    """The range over the rounds (one value when they agree), or a dash when nothing was measured."""
    if not values:
        return "—"
    low, high = fmt.format(min(values)), fmt.format(max(values))
    return f"{low}{unit}" if low == high else f"{low}\N{EN DASH}{high}{unit}"


def added(path: PathResults, direct: PathResults, attr: str) -> list[float]:
    values = []
    for mine, base in zip(path.rate, direct.rate, strict=True):
        if mine is not None and base is not None:
            values.append(getattr(mine, attr) - getattr(base, attr))
    return values


def shares(path: PathResults, reference: PathResults) -> list[float]:
    return [
        100 * mine.ok_per_s / ref.ok_per_s
        for mine, ref in zip(path.maximum, reference.maximum, strict=True)
        if ref.ok_per_s > 0
    ]


def mean_max(path: PathResults) -> float:
    return statistics.fmean(m.ok_per_s for m in path.maximum) if path.maximum else 0.0


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


COLUMNS = (
    ("path", 20),
    ("p50 ms", 13),
    ("p99 ms", 15),
    ("added p50", 13),
    ("added p99", 17),
    ("2xx @rate", 10),
    ("max req/s", 13),
    ("2xx @max", 9),
    ("CPU us/req", 11),
    ("of nginx", 10),
    ("of bare", 10),
)


def table_row(cells: list[str]) -> str:
    first, *rest = zip(cells, COLUMNS, strict=True)
    return " ".join([f"{first[0]:<{first[1][1]}}", *(f"{cell:>{width}}" for cell, (_, width) in rest)])


def path_row(name: str, path: PathResults, results: dict[str, PathResults]) -> str:
    direct = results[DIRECT]
    measured = [r for r in path.rate if r is not None]
    mark = "*" if len(measured) < len(path.rate) else ""
    return table_row(
        [
            name,
            span([r.p50_ms for r in measured], "{:.2f}") + mark,
            span([r.p99_ms for r in measured], "{:.2f}") + mark,
            "—" if name == DIRECT else span(added(path, direct, "p50_ms"), "{:+.2f}"),
            "—" if name == DIRECT else span(added(path, direct, "p99_ms"), "{:+.2f}"),
            span([100 * r.ok / r.requests for r in measured if r.requests], "{:.1f}", " %"),
            span([m.ok_per_s for m in path.maximum], "{:,.0f}"),
            span([100 * m.ok / m.total for m in path.maximum if m.total], "{:.1f}", " %"),
            span([m.cpu_us_per_ok for m in path.maximum if m.cpu_us_per_ok], "{:.0f}"),
            span(shares(path, results[NGINX]), "{:.0f}", " %") if NGINX in results else "—",
            span(shares(path, results[BARE]), "{:.0f}", " %") if BARE in results else "—",
        ]
    )


def print_report(
    results: dict[str, PathResults], args: argparse.Namespace, gateway_log: Path, load_at_start: float
) -> None:
    print()
    print(
        f"Constant rate {args.rate} requests/s for {args.duration:g} s (vegeta {VEGETA[1]}); maximum: hey {HEY[1]}, "
        f"{MAX_CONNECTIONS} connections, {args.max_seconds:g} s, 2xx only; {args.rounds} round(s), ranges over rounds."
    )
    print(
        f"{os.cpu_count()} CPUs; 1-minute load average {load_at_start:.2f} at the start, "
        f"{os.getloadavg()[0]:.2f} now. CPU us/req: the proxy's processes during the maximum run "
        "(for Ray: its proxy, replica and own services)."
    )
    header = table_row([title for title, _ in COLUMNS])
    print(header)
    print("-" * len(header))
    for name in PATH_ORDER:
        path = results.get(name)
        if path is None:
            continue
        if path.skipped and not path.maximum:
            print(f"{name:<20} skipped: {path.skipped}")
            continue
        print(path_row(name, path, results))
    if any(len([r for r in p.rate if r is not None]) < len(p.rate) for p in results.values()):
        print(f"* some rounds not measured at {args.rate}/s: that round's maximum was below 1.1x the rate")
    ray = results.get(RAY)
    if ray is not None and ray.maximum:
        print(
            f"Ray Serve: proxy + one replica answering itself (max_ongoing_requests={RAY_MAX_ONGOING}), no pod behind; "
            "its added latency is against the direct path to the pod"
        )
    for name in PATH_ORDER:
        path = results.get(name)
        if path is None:
            continue
        failures = [r.codes for r in path.rate if r is not None and r.ok < r.requests]
        failures += [m.codes for m in path.maximum if m.ok < m.total and any(not is_ok(c) for c in m.codes)]
        errors = [e for r in path.rate if r is not None for e in r.errors] + [e for m in path.maximum for e in m.errors]
        if failures or errors:
            print(f"{name}: status codes {failures} errors {errors[:3]}")

    print_targets(results, args)
    print_ledger_targets(results)
    print_gateway_log(gateway_log)


def print_targets(results: dict[str, PathResults], args: argparse.Namespace) -> None:
    print()
    print("Targets (gateway):")
    gateway, ray = results[GATEWAY], results.get(RAY)
    add50, add99 = added(gateway, results[DIRECT], "p50_ms"), added(gateway, results[DIRECT], "p99_ms")
    if add50:
        print(
            f"  added p50 <= {TARGET_ADDED_P50_MS:g} ms at {args.rate}/s (worst round): "
            f"{max(add50):+.2f} ms  {verdict(max(add50) <= TARGET_ADDED_P50_MS)}"
        )
        print(
            f"  added p99 <= {TARGET_ADDED_P99_MS:g} ms at {args.rate}/s (worst round): "
            f"{max(add99):+.2f} ms  {verdict(max(add99) <= TARGET_ADDED_P99_MS)}"
        )
    else:
        print(f"  added latency: not measured (the gateway's maximum was below {args.rate}/s)  MISSED")
    if NGINX in results and results[NGINX].maximum:
        share = mean_max(gateway) / mean_max(results[NGINX])
        print(
            f"  max >= {100 * TARGET_SHARE_OF_NGINX:.0f} % of nginx's (mean of rounds): "
            f"{100 * share:.0f} %  {verdict(share >= TARGET_SHARE_OF_NGINX)}"
        )
    if ray is not None and ray.maximum:
        print(
            f"  max ahead of Ray Serve's proxy: {mean_max(gateway):,.0f} vs {mean_max(ray):,.0f} req/s "
            f"({mean_max(gateway) / max(mean_max(ray), 1e-9):.1f}x)  {verdict(mean_max(gateway) > mean_max(ray))}"
        )
    else:
        print(f"  max ahead of Ray Serve's proxy: not measured ({ray.skipped if ray else 'skipped'})")
    if BARE in results and results[BARE].maximum:
        share = mean_max(gateway) / mean_max(results[BARE])
        print(
            f"  max as a share of the bare aiohttp proxy's (mean of rounds; >= {100 * GOOD_SHARE_OF_BARE:.0f} % is "
            f"good): {100 * share:.0f} %  {verdict(share >= GOOD_SHARE_OF_BARE)}"
        )
        mine = [m.cpu_us_per_ok for m in gateway.maximum if m.cpu_us_per_ok]
        bare = [m.cpu_us_per_ok for m in results[BARE].maximum if m.cpu_us_per_ok]
        if mine and bare:
            ratio = statistics.mean(mine) / statistics.mean(bare)
            print(
                f"  CPU per request <= {TARGET_CPU_OF_BARE:g}x the bare aiohttp proxy's (mean of rounds): "
                f"{statistics.mean(mine):.0f} vs {statistics.mean(bare):.0f} us = {ratio:.2f}x  "
                f"{verdict(ratio <= TARGET_CPU_OF_BARE)}"
            )


def print_ledger_targets(results: dict[str, PathResults]) -> None:
    """The gateway with its usage ledger on against the gateway with it off, same run, same rounds."""
    off, on = results.get(GATEWAY), results.get(LEDGER)
    if off is None or on is None or not off.maximum or not on.maximum:
        return
    print("Targets (usage ledger on vs off):")
    share = mean_max(on) / max(mean_max(off), 1e-9)
    print(
        f"  max req/s: on {mean_max(on):,.0f}, off {mean_max(off):,.0f} ({100 * share:.1f} %; within "
        f"{100 * (1 - TARGET_LEDGER_MAX_SHARE):.0f} %)  {verdict(share >= TARGET_LEDGER_MAX_SHARE)}"
    )
    add_on, add_off = added(on, results[DIRECT], "p50_ms"), added(off, results[DIRECT], "p50_ms")
    if add_on and add_off:
        gap = statistics.mean(add_on) - statistics.mean(add_off)
        print(
            f"  added p50: on {statistics.mean(add_on):+.3f} ms, off {statistics.mean(add_off):+.3f} ms "
            f"(gap {gap:+.3f} ms; within {TARGET_LEDGER_ADDED_P50_MS:g} ms)  "
            f"{verdict(abs(gap) <= TARGET_LEDGER_ADDED_P50_MS)}"
        )
    else:
        print("  added p50: not measured (a maximum below the rate)")


def print_gateway_log(gateway_log: Path) -> None:
    text = gateway_log.read_text(errors="replace") if gateway_log.exists() else ""
    noisy = [line for line in text.splitlines() if " WARNING " in line or " ERROR " in line or "Traceback" in line]
    print(f"Gateway log {gateway_log}: {len(noisy)} warning/error line(s)")
    for line in noisy[:10]:
        print(f"  {line[:200]}")


# --- the run -----------------------------------------------------------------------------------------------------


def measure(
    urls: dict[str, str],
    pids: dict[str, int],
    key: str,
    vegeta: Path,
    hey: Path,
    work: Path,
    args: argparse.Namespace,
) -> dict[str, PathResults]:
    results = {name: PathResults() for name in urls}
    targets = {name: targets_file(work, name, url, key) for name, url in urls.items()}
    warm_up = 0.5 if args.smoke else 2.0
    progress(f"warming every path up ({warm_up:g} s at the rate each, not recorded) ...")
    for name in urls:
        vegeta_rate(vegeta, targets[name], args.rate, warm_up, work / "warmup.bin")
    for round_index in range(1, args.rounds + 1):
        # Every other round runs the paths in the reverse order, so that no path always follows the same one.
        order = list(urls.items()) if round_index % 2 else list(reversed(urls.items()))
        for name, url in order:
            seconds = args.max_seconds
            progress(f"round {round_index}: maximum of {name} ({MAX_CONNECTIONS} connections, {seconds:g} s) ...")
            root = pids.get(name)
            cpu_before = tree_cpu_seconds(root) if root else 0.0
            result = hey_max(hey, url, key, seconds)
            if root and result.ok:
                cpu = tree_cpu_seconds(root) - cpu_before
                result = dataclasses.replace(result, cpu_us_per_ok=1e6 * cpu / result.ok)
            results[name].maximum.append(result)
            cpu_note = f", proxy CPU {result.cpu_us_per_ok:.0f} us/request" if result.cpu_us_per_ok else ""
            progress(f"  {result.ok_per_s:,.0f} 2xx/s ({result.ok}/{result.total} ok{cpu_note})")
            if name == RAY:
                settle(url, key)
        for name, _ in order:
            last_max = results[name].maximum[-1].ok_per_s
            if last_max < 1.1 * args.rate:
                progress(f"round {round_index}: {name} over capacity at {args.rate}/s (max {last_max:,.0f}); skipped")
                results[name].rate.append(None)
                continue
            progress(f"round {round_index}: {name} at {args.rate}/s for {args.duration:g} s ...")
            rate = vegeta_rate(vegeta, targets[name], args.rate, args.duration, work / "attack.bin")
            results[name].rate.append(rate)
            progress(f"  p50 {rate.p50_ms:.2f} ms, p99 {rate.p99_ms:.2f} ms, {rate.ok}/{rate.requests} ok")
    return results


def run(args: argparse.Namespace) -> None:
    if os.geteuid() != 0:
        raise SystemExit("run as root: the local cluster's pods live in network namespaces")
    work = Path(tempfile.mkdtemp(prefix="gateway-overhead-"))
    load_at_start = os.getloadavg()[0]
    progress(f"logs and configs in {work}; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    # --smoke runs under the egress guard of a test session, which refuses the module proxy: it installs nothing.
    vegeta = go_tool(*VEGETA, install=not args.smoke)
    hey = go_tool(*HEY, install=not args.smoke)
    # Every peer is installed before the local cluster starts: from then on this process and all it
    # starts are under the cluster's egress guard, which refuses any address off this machine.
    nginx_skipped: str | None = None
    if args.smoke and nginx_installed() is None:
        nginx_skipped = "not installed (--smoke installs no peer; a full run installs it with apt-get)"
        print(f"nginx skipped: {nginx_skipped}", flush=True)
    else:
        nginx_binary()
    ray_skipped: str | None = "--skip-ray" if args.skip_ray else None
    if args.smoke:
        ray_skipped = "--smoke (Ray Serve needs its own environment installed: a full run does that)"
        print(f"Ray Serve skipped: {ray_skipped}", flush=True)
    if ray_skipped is None:
        try:
            ray_python()
        except Unavailable as error:
            ray_skipped = str(error)
            print(f"Ray Serve unavailable, continuing without it: {ray_skipped}", flush=True)
    processes = Processes()
    try:
        system = start_system(work, processes, args.cluster)
        pod = f"{system.pod_ip}:{UPSTREAM_PORT}"
        urls = {
            DIRECT: f"http://{pod}/run",
            GATEWAY: f"{system.gateway_url}/models/v2/{MODEL}",
            LEDGER: start_ledger_gateway(work, processes, system),
            BARE: start_bare_proxy(work, processes, pod, system.key),
        }
        if nginx_skipped is None:
            urls[NGINX] = start_nginx(work, processes, pod)
        if ray_skipped is None:
            try:
                urls[RAY] = start_ray(work, processes)
            except Unavailable as error:
                ray_skipped = str(error)
                print(f"Ray Serve unavailable, continuing without it: {ray_skipped}", flush=True)
        results = measure(urls, processes.pids(), system.key, vegeta, hey, work, args)
        if RAY not in results:
            results[RAY] = PathResults(skipped=ray_skipped)
        if nginx_skipped is not None:
            results[NGINX] = PathResults(skipped=nginx_skipped)
        print_report(results, args, system.gateway_log, load_at_start)
    finally:
        progress("stopping the processes this run started ...")
        processes.stop_all()
        if not args.keep:
            from modelcluster.devcluster import controlplane
            from modelcluster.devcluster.config import ClusterConfig

            progress(f"stopping the cluster {args.cluster} ...")
            controlplane.down(ClusterConfig(name=args.cluster))
        progress(f"done; logs in {work}")


@contextlib.contextmanager
def _stop_on_sigterm() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt so ``finally`` blocks clean up."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per constant-rate attack")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds over all paths")
    parser.add_argument("--rate", type=int, default=500, help="constant rate, requests/s")
    parser.add_argument("--skip-ray", action="store_true", help="leave Ray Serve out")
    parser.add_argument("--keep", action="store_true", help="leave the local cluster running")
    parser.add_argument("--max-seconds", type=float, default=MAX_SECONDS, help="seconds of each maximum run (hey)")
    parser.add_argument("--cluster", default=CLUSTER_NAME, help="name of the local cluster the run starts")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="tiny sizes (1 round, 1 s, 50 requests/s), no Ray Serve, nginx only if installed: checks the script runs",
    )
    parser.add_argument(
        "--install-tools", action="store_true", help="only install the load generators (vegeta, hey) into the cache"
    )
    parser.add_argument("--serve-upstream", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--serve-bare-proxy", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--upstream", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.smoke:
        args.rounds, args.duration, args.rate, args.max_seconds = 1, 1.0, 50, 1.0
    if args.install_tools:
        for tool in (VEGETA, HEY):
            progress(f"{tool[2]} {tool[1]}: {go_tool(*tool)}")
    elif args.serve_upstream:
        serve_upstream(int(os.environ.get("PORT", UPSTREAM_PORT)))
    elif args.serve_bare_proxy:
        serve_bare_proxy(args.port, args.upstream, os.environ["BENCH_AUTHORIZATION"])
    else:
        with _stop_on_sigterm():
            try:
                run(args)
            except Unavailable as error:
                raise SystemExit(f"gateway_overhead.py: {error}") from None


if __name__ == "__main__":
    main()
