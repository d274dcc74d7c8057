"""``modelcluster dev``: the whole system on the local control plane, in the foreground.

Starts (or reuses) the local cluster, installs the CRD and the namespaces the operator and the
gateway use, makes a dev API key (kept under the cluster's state directory and reused while its
Secret exists), runs the operator and the gateway as local processes against the cluster's admin
kubeconfig, and creates a ModelCluster for all-MiniLM-L6-v2, which a process-backed runtime pod
serves offline (``modelcluster/tiny-chat`` gets its cluster on its first request). Their output
is one log, each line prefixed with its process. Ctrl-C (or SIGTERM) stops the gateway, the
operator and, when this command started it, the cluster with its model pods.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import httpx
import yaml

from modelcluster.api.naming import object_name
from modelcluster.catalog import load_catalog
from modelcluster.devcluster import controlplane, netguard, processes, system
from modelcluster.devcluster.binaries import log
from modelcluster.devcluster.config import ClusterConfig, load_pod_commands
from modelcluster.devcluster.devlog import FileFollower, PrefixedLog, pod_log_name, relay
from modelcluster.devcluster.hub_models import hub_model_commands
from modelcluster.devcluster.offline_models import MODEL_ID
from modelcluster.devcluster.tiny_models import MODEL_ID as CHAT_MODEL_ID
from modelcluster.devcluster.tiny_tasks import by_task
from modelcluster.devcluster.tools import ensure_tools
from modelcluster.gateway.keys import key_id_of

CRD_NAME = system.CRD_NAME
DEV_TENANT = "dev"
SYSTEM_NAMESPACE = system.SYSTEM_NAMESPACE
#: The operator's lease and the key Secrets; the dev tenant's namespace (labelled a tenant) is :data:`DEV_TENANTS`.
DEV_NAMESPACES = (SYSTEM_NAMESPACE,)
DEV_TENANTS = (DEV_TENANT,)
GATEWAY_PORT = 8080
#: The dev gateway listens on loopback only: its API and its metrics (every tenant's models) stay on this machine.
GATEWAY_HOST = "127.0.0.1"
GATEWAY_METRICS_PORT = 8083
OPERATOR_HEALTH_PORT = 8081
OPERATOR_METRICS_PORT = 8082
KEY_ENV = "MODELCLUSTER_API_KEY"
READY_TIMEOUT_S = 300.0
STOP_GRACE_S = 15.0
EGRESS_CHECK_S = 5.0


@dataclass(frozen=True)
class Ports:
    gateway: int = GATEWAY_PORT
    operator_health: int = OPERATOR_HEALTH_PORT
    operator_metrics: int = OPERATOR_METRICS_PORT
    gateway_metrics: int = GATEWAY_METRICS_PORT

    def named(self) -> dict[str, int]:
        return {
            "gateway (--port)": self.gateway,
            "gateway metrics (--gateway-metrics-port)": self.gateway_metrics,
            "operator health (--health-port)": self.operator_health,
            "operator metrics (--metrics-port)": self.operator_metrics,
        }


def sample_cluster() -> dict[str, Any]:
    """A ModelCluster for the small model that the local cluster serves offline."""
    return system.modelcluster_body(MODEL_ID, namespace=DEV_TENANT, capacity={"min": 1, "desired": 1, "max": 1})


def namespaces() -> list[dict[str, Any]]:
    """The namespaces the dev system uses: the operator's lease and the key Secrets, and the dev tenant."""
    return system.namespace_bodies(DEV_NAMESPACES, DEV_TENANTS)


#: One warm standby for the text and the llm families in the dev tenant (a wake borrows it; docs/autoscaling.md).
DEV_WARM_POOLS = ("text/micro=1", "llm/micro=1@modelcluster.dev/local/runtime-llm:0.1.0")


def operator_argv(executable: Path, name: str, ports: Ports) -> list[str]:
    """The operator as it runs in a cluster: leader election on, its lease in the system namespace, the dev
    tenant's warm pools."""
    return system.operator_argv(
        executable,
        metrics_port=ports.operator_metrics,
        health_port=ports.operator_health,
        extra=[
            f"--identity=modelcluster-dev-{name}",
            f"--gateway-metrics-url=http://127.0.0.1:{ports.gateway_metrics}/metrics",
            *(f"--warm-pool={pool}" for pool in DEV_WARM_POOLS),
            f"--warm-pool-namespace={DEV_TENANT}",
        ],
    )


def gateway_argv(executable: Path, ports: Ports) -> list[str]:
    return system.gateway_argv(executable, port=ports.gateway, metrics_port=ports.gateway_metrics, host=GATEWAY_HOST)


def ports_in_use(ports: Ports) -> list[str]:
    """The named ports that something already listens on."""
    taken = []
    for what, port in ports.named().items():
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("0.0.0.0", port))
            except OSError:
                taken.append(f"{what} {port}")
    return taken


def dev_key(executable: Path, env: dict[str, str], saved: Path) -> str:
    """The dev tenant's API key: the saved one while its Secret exists, else a new one (saved, mode 0600)."""
    listed = subprocess.run(
        [str(executable), "keys", "list", f"--tenant={DEV_TENANT}", f"--namespace={SYSTEM_NAMESPACE}"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    if saved.is_file():
        key = saved.read_text().strip()
        key_id = key_id_of(key)
        if key_id is not None and key_id in listed.split():
            return key
    created = subprocess.run(
        [
            str(executable),
            "keys",
            "create",
            f"--tenant={DEV_TENANT}",
            "--concurrency=64",
            f"--namespace={SYSTEM_NAMESPACE}",
        ],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    key = created.stdout.strip().splitlines()[-1]
    saved.unlink(missing_ok=True)
    saved.touch(mode=0o600)
    saved.write_text(key + "\n")
    return key


def shown_python(executable: str, cwd: Path) -> str:
    """The interpreter as a newcomer types it: relative to the working directory when inside it."""
    path = Path(executable)
    with contextlib.suppress(ValueError):
        return str(path.relative_to(cwd))
    return str(path)


def try_this(port: int, python: str) -> str:
    """Commands to paste into a shell that has the export lines."""
    auth = f'-H "Authorization: Key ${KEY_ENV}"'
    base = f"http://localhost:{port}/models/v2"
    if port == GATEWAY_PORT:
        sdk = (
            f"  {python} -c 'import os; from bytez import Bytez; "
            f'sdk = Bytez(os.environ["{KEY_ENV}"], dev=True); '
            f'print(sdk.model("{MODEL_ID}").run("a cat sits on the mat").output[:4])\''
        )
    else:
        sdk = f"  # the bytez SDK's dev mode talks to localhost:{GATEWAY_PORT} only; this gateway is on :{port}"
    openai = (
        f"  {python} -c 'import os; from openai import OpenAI; "
        f'client = OpenAI(api_key=os.environ["{KEY_ENV}"], base_url="{base}/openai/v1"); '
        f'print(client.chat.completions.create(model="{CHAT_MODEL_ID}", '
        f'messages=[{{"role": "user", "content": "hi"}}]).choices[0].message.content)\''
    )
    return "\n".join(
        [
            "try this:",
            f"  curl -s {base}/list/clusters {auth}",
            f'  curl -s {base}/{MODEL_ID} {auth} -d \'{{"text": "a cat sits on the mat"}}\'',
            f"  # the first request for {CHAT_MODEL_ID} creates its cluster and waits for its pod:",
            f"  curl -sN {base}/{CHAT_MODEL_ID} {auth} \\",
            '    -d \'{"messages": [{"role": "user", "content": "hello"}], "stream": true}\'',
            "  # every task has a tiny model, modelcluster/tiny-<task> (e2e/README.md), for instance:",
            f'  curl -s {base}/{by_task()["text-generation"]} {auth} -d \'{{"text": "Once upon a time"}}\'',
            sdk,
            openai,
            "  kubectl get mc -A",
        ]
    )


def banner(name: str, kubeconfig: Path, key: str, tools_dir: Path, try_lines: str, owns_cluster: bool) -> str:
    """What ``dev`` prints once the system serves: the export lines and what to try."""
    rule = "-" * 78
    exports = [
        f"export KUBECONFIG={kubeconfig}",
        f"export {KEY_ENV}={key}",
        f"export PATH={tools_dir}:$PATH  # kubectl 1.34 and helm",
    ]
    stops = (
        "the operator, the gateway, the model pods and the cluster"
        if owns_cluster
        else (
            f"the operator and the gateway (cluster {name!r} was running before and keeps running: "
            f"`modelcluster cluster down --name {name}` stops it)"
        )
    )
    return "\n".join(
        [
            rule,
            f"ModelCluster is running on the local cluster {name!r}. In another shell:",
            "",
            *exports,
            "",
            try_lines,
            "",
            f"Ctrl-C stops {stops}.",
            rule,
        ]
    )


@dataclass(frozen=True)
class Kubectl:
    """kubectl against the dev cluster; what it prints goes to the log, a failure ends the command."""

    executable: Path
    env: dict[str, str]

    def __call__(self, *args: str, stdin: str | None = None) -> None:
        result = subprocess.run(
            [str(self.executable), *args], input=stdin, env=self.env, capture_output=True, text=True, check=False
        )
        for line in result.stdout.splitlines():
            log(f"kubectl: {line}")
        if result.returncode != 0:
            raise click.ClickException(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def _signals_interrupt() -> Iterator[None]:
    """Ctrl-C, SIGTERM and SIGHUP end the command (SIGINT too when the shell started it with SIGINT ignored)."""
    numbers = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {number: signal.signal(number, _interrupt) for number in numbers}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


@contextlib.contextmanager
def _shielded() -> Iterator[None]:
    """Let a cleanup finish: Ctrl-C, SIGTERM and SIGHUP are ignored meanwhile."""
    numbers = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {number: signal.signal(number, signal.SIG_IGN) for number in numbers}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


class Component:
    """A child process of ``dev`` in its own session (Ctrl-C reaches only ``dev``), its output relayed to the log."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], sink: PrefixedLog) -> None:
        self.name = name
        self.process = subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        assert self.process.stdout is not None
        self._relay = relay(self.process.stdout, name, sink)

    def exited(self) -> int | None:
        return self.process.poll()

    def stop(self, grace: float = STOP_GRACE_S) -> int:
        """SIGTERM its process group, SIGKILL it after ``grace`` seconds; its exit code."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                log(f"{self.name} did not stop within {grace:.0f}s; killing it")
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._relay.join(timeout=5.0)
        return self.process.returncode


def cluster_serving(kubeconfig: Path, namespace: str, name: str) -> bool:
    """Whether the ModelCluster reports status ``running`` with a ready pod."""
    from kubernetes import client as k8s
    from kubernetes import config as k8s_config
    from kubernetes.client.exceptions import ApiException

    api = k8s.CustomObjectsApi(k8s_config.new_client_from_config(config_file=str(kubeconfig)))
    try:
        body: dict[str, Any] = api.get_namespaced_custom_object(
            "modelcluster.dev", "v1alpha1", namespace, "modelclusters", name
        )
    except ApiException:
        return False
    status = body.get("status") or {}
    return status.get("status") == "running" and int(status.get("readyReplicas") or 0) >= 1


def answers_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def leftover_pids(record: Path) -> dict[str, int]:
    """Components of an earlier ``dev`` (killed before it could stop them) that still run, by name."""
    try:
        recorded = json.loads(record.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    found = {}
    for name, pid in recorded.items():
        if not isinstance(pid, int):
            continue
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except FileNotFoundError:
            continue
        if processes.alive(pid) and b"modelcluster" in b" ".join(argv) and name.encode() in argv:
            found[name] = pid
    return found


def stop_leftovers(record: Path) -> None:
    for name, pid in leftover_pids(record).items():
        log(f"stopping the {name} (pid {pid}) that an earlier `modelcluster dev` left running")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        while processes.alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    record.unlink(missing_ok=True)


class ComponentExited(click.ClickException):
    def __init__(self, component: Component, code: int) -> None:
        super().__init__(f"the {component.name} exited with code {code} (its last lines are above)")


def _wait_serving(components: list[Component], kubeconfig: Path, ports: Ports, sample: bool) -> list[str]:
    """Wait until the gateway and the operator are ready and the sample cluster serves; what is still not ready
    after the deadline (empty once everything is)."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    waiting = ["the gateway"]
    while time.monotonic() < deadline:
        _check_alive(components)
        checks: dict[str, Callable[[], bool]] = {
            f"the gateway (http://127.0.0.1:{ports.gateway}/ready)": lambda: answers_ok(
                f"http://127.0.0.1:{ports.gateway}/ready"
            ),
            f"the operator (http://127.0.0.1:{ports.operator_health}/readyz)": lambda: answers_ok(
                f"http://127.0.0.1:{ports.operator_health}/readyz"
            ),
        }
        if sample:
            checks[f"the sample cluster {DEV_TENANT}/{object_name(MODEL_ID)}"] = lambda: cluster_serving(
                kubeconfig, DEV_TENANT, object_name(MODEL_ID)
            )
        waiting = [what for what, ready in checks.items() if not ready()]
        if not waiting:
            return []
        time.sleep(1.0)
    return waiting


def _check_alive(components: list[Component]) -> None:
    for component in components:
        code = component.exited()
        if code is not None:
            raise ComponentExited(component, code)


@click.command()
@click.option(
    "--name",
    default="dev",
    show_default=True,
    envvar="MODELCLUSTER_DEV_NAME",
    help="Cluster name (env MODELCLUSTER_DEV_NAME); clusters of different names run side by side.",
)
@click.option(
    "--port",
    default=GATEWAY_PORT,
    show_default=True,
    envvar="MODELCLUSTER_DEV_PORT",
    help="Gateway port (env MODELCLUSTER_DEV_PORT).",
)
@click.option("--health-port", default=OPERATOR_HEALTH_PORT, show_default=True, help="Operator /healthz, /readyz.")
@click.option("--metrics-port", default=OPERATOR_METRICS_PORT, show_default=True, help="Operator /metrics.")
@click.option(
    "--gateway-metrics-port", default=GATEWAY_METRICS_PORT, show_default=True, help="Gateway /metrics (not the API's)."
)
@click.option(
    "--pod-commands",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=Path("e2e") / "pod-commands.yaml",
    show_default=True,
    help="Image -> local command mapping for pods that really serve.",
)
@click.option("--sample/--no-sample", default=True, show_default=True, help="Create the all-MiniLM-L6-v2 cluster.")
@click.option(
    "--hub-models/--no-hub-models",
    default=False,
    show_default=True,
    envvar="MODELCLUSTER_DEV_HUB_MODELS",
    help="Run every catalog model's family runtime as a process (weights from ~/.cache/modelcluster/hf-home; "
    "env MODELCLUSTER_DEV_HUB_MODELS); only when this command starts the cluster.",
)
def dev(
    name: str,
    port: int,
    health_port: int,
    metrics_port: int,
    gateway_metrics_port: int,
    pod_commands: Path,
    sample: bool,
    hub_models: bool,
) -> None:
    """Run the whole system locally: control plane, operator, gateway, model pods and a dev API key.

    Prints the export lines and commands to try once it serves, then logs every component's
    lines until Ctrl-C, which stops everything this command started.
    """
    commands = load_pod_commands(pod_commands)
    if hub_models:
        commands = hub_model_commands(load_catalog(), commands)
    config = ClusterConfig(name=name, pod_commands=commands)
    record = config.state_dir / "dev-components.json"
    stop_leftovers(record)
    ports = Ports(
        gateway=port,
        operator_health=health_port,
        operator_metrics=metrics_port,
        gateway_metrics=gateway_metrics_port,
    )
    taken = ports_in_use(ports)
    if taken:
        raise click.ClickException(
            f"port in use: {', '.join(taken)}. Stop what listens there (`ss -ltnp`) or choose other ports "
            "with the options named."
        )
    tools = ensure_tools()
    owns_cluster = not controlplane.running(config)
    if hub_models and not owns_cluster:
        log(f"--hub-models: cluster {name!r} already runs with the pod commands it started with; stop it to apply")
    sink = PrefixedLog(sys.stderr)
    components: list[Component] = []
    followers: list[FileFollower] = []
    crashed: ComponentExited | None = None
    with _signals_interrupt():
        try:
            kubeconfig = controlplane.up(config)
            env = dict(os.environ, KUBECONFIG=str(kubeconfig), PYTHONUNBUFFERED="1")
            kubectl = Kubectl(tools.kubectl, env)
            # The pod credentials' signing key: kept with the cluster, in its Secret as Helm makes it, and given
            # to the operator and the gateway only (never to this process's environment, which pods inherit).
            signing_key = system.pod_auth_key(config.state_dir / "pod-auth-key")
            system.install(kubectl, DEV_NAMESPACES, DEV_TENANTS, pod_auth=signing_key)
            signed = {**env, **system.pod_auth_env(signing_key)}
            executable = system.executable()
            key = dev_key(executable, env, kubeconfig.parent / "api-key")
            followers = [
                FileFollower(config.state_dir / "run", "podrunner.log", lambda _: "podrunner", sink).start(),
                FileFollower(config.state_dir / "pods", "*.log", pod_log_name, sink).start(),
            ]
            log("starting the operator and the gateway; their lines follow, prefixed")
            components = [
                Component("operator", operator_argv(executable, name, ports), signed, sink),
                Component("gateway", gateway_argv(executable, ports), signed, sink),
            ]
            record.write_text(json.dumps({component.name: component.process.pid for component in components}))
            if sample:
                kubectl("apply", "-f", "-", stdin=yaml.safe_dump(sample_cluster(), sort_keys=False))
            waiting = _wait_serving(components, kubeconfig, ports, sample)
            if waiting:
                log(
                    f"not serving after {READY_TIMEOUT_S:.0f}s: waiting for {', '.join(waiting)}; "
                    "see the lines above (`kubectl get mc,pods -A`)"
                )
            python = shown_python(sys.executable, Path.cwd())
            lines = try_this(port, python)
            click.echo(banner(name, kubeconfig, key, tools.kubectl.parent, lines, owns_cluster))
            refusals = netguard.RefusalWatch(config)
            checked = 0.0
            while True:
                _check_alive(components)
                if time.monotonic() - checked > EGRESS_CHECK_S:
                    checked = time.monotonic()
                    for refusal in refusals.new():
                        log(f"egress guard refused {refusal}: a process of the cluster tried to leave this machine")
                time.sleep(0.5)
        except KeyboardInterrupt:
            log("stopping")
        except ComponentExited as error:
            crashed = error
        finally:
            with _shielded():
                _stop_all(components, followers, config, owns_cluster)
                record.unlink(missing_ok=True)
    if crashed is not None:
        raise crashed


def _stop_all(components: list[Component], followers: list[FileFollower], config: ClusterConfig, owns: bool) -> None:
    for component in reversed(components):  # the gateway first: it stops taking requests
        code = component.stop()
        log(f"{component.name} stopped (exit code {code})")
    if owns:
        controlplane.down(config)
    for follower in followers:
        follower.stop()
    if not owns:
        log(controlplane.egress_summary(config))
        log(f"cluster {config.name!r} keeps running (it ran before); `modelcluster cluster down --name {config.name}`")
