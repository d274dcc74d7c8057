"""Run a local process for each pod whose image has a configured command.

This is the part of a kubelet the local cluster needs so that pods really serve: for every
bound pod running a mapped image it creates a network namespace with a private address,
starts the command there with the pod's environment and arguments (or, for an image that
``make images`` built and the mapping gives container settings, runs the image itself with runc
in that namespace: see ``podcontainer``), reports the pod's
status (address, container state, restarts) and drives the Ready condition from the
container's probes. A process that exits is restarted with the kubelet's back-off; a pod
being deleted gets SIGTERM, its grace period, then SIGKILL, and is removed. Pods of other
images are left to KWOK.

Run as ``python -m modelcluster.devcluster.podrunner --state-dir DIR`` (``cluster up`` does).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime as dt
import ipaddress
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes import watch
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError as Urllib3Error

from modelcluster.api.pod_auth import SIGNING_KEY_ENV
from modelcluster.devcluster import podcontainer, podcredentials, podnet, podvolumes
from modelcluster.devcluster.apirelay import ApiRelay
from modelcluster.devcluster.config import ClusterConfig, PodCommand
from modelcluster.devcluster.images import runc
from modelcluster.devcluster.images.oci import ContainerRequest, Mount, user_ids
from modelcluster.devcluster.pki import Pki
from modelcluster.devcluster.podstatus import ContainerView, exit_code_of, pod_status, termination_message
from modelcluster.devcluster.probes import ProbeSpec, ProbeState, check

TICK = 0.1
BACKOFF_START = 10.0
BACKOFF_MAX = 300.0
DEFAULT_GRACE = 30.0
# A container a failed probe restarts is stopped inside the runner's loop: bound how long that blocks it.
MAX_BLOCKING_GRACE = 30.0
PROBE_KINDS = ("startup", "readiness", "liveness")


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _log(message: str) -> None:
    print(f"{_now()} podrunner: {message}", flush=True)


def termination_grace(pod: dict[str, Any]) -> float:
    """Seconds from SIGTERM to SIGKILL: the deletion's own grace period, else the pod's, else the default."""
    deletion = pod["metadata"].get("deletionGracePeriodSeconds")
    if deletion is not None:
        return float(deletion)
    spec = pod["spec"].get("terminationGracePeriodSeconds")
    return float(DEFAULT_GRACE if spec is None else spec)


SecretLookup = Callable[[str, str, str], str | None]


def _no_secrets(namespace: str, name: str, key: str) -> str | None:
    return None


def container_env(
    container: dict[str, Any], pod: dict[str, Any], pod_ip: str, secret: SecretLookup = _no_secrets
) -> dict[str, str]:
    """The container's literal env values, the downward-API fields a local process can know, and the values of
    ``secretKeyRef`` entries (``secret(namespace, name, key)``, as a kubelet reads them: from the pod's own
    namespace; an optional one that is missing is left out)."""
    fields = {
        "metadata.name": pod["metadata"]["name"],
        "metadata.namespace": pod["metadata"]["namespace"],
        "metadata.uid": pod["metadata"]["uid"],
        "spec.nodeName": pod["spec"].get("nodeName", ""),
        "status.podIP": pod_ip,
    }
    env: dict[str, str] = {}
    for entry in container.get("env") or []:
        if "value" in entry:
            env[entry["name"]] = str(entry["value"])
        elif (ref := (entry.get("valueFrom") or {}).get("fieldRef")) and ref.get("fieldPath") in fields:
            env[entry["name"]] = fields[ref["fieldPath"]]
        elif secret_ref := (entry.get("valueFrom") or {}).get("secretKeyRef"):
            value = secret(pod["metadata"]["namespace"], str(secret_ref.get("name")), str(secret_ref.get("key")))
            if value is None and not secret_ref.get("optional"):
                raise MissingSecret(f"secret {secret_ref.get('name')!r} (key {secret_ref.get('key')!r}) not found")
            if value is not None:
                env[entry["name"]] = value
    return env


class MissingSecret(LookupError):
    """A container's env names a Secret key that does not exist (a kubelet reports CreateContainerConfigError)."""


@dataclass
class LocalPod:
    """One process-backed pod and the state a kubelet keeps for it."""

    namespace: str
    name: str
    uid: str
    address: ipaddress.IPv4Address
    netns: str
    container: dict[str, Any]
    others: list[dict[str, Any]]
    command: PodCommand
    grace: float
    start_time: str
    log_path: Path
    readiness: ProbeSpec | None
    liveness: ProbeSpec | None
    startup: ProbeSpec | None
    pod: dict[str, Any]
    process: subprocess.Popen[bytes] | None = None
    started_at: str | None = None
    restart_count: int = 0
    next_start: float = 0.0
    last_exit_code: int | None = None
    last_finished_at: str | None = None
    last_started_at: str | None = None
    last_message: str | None = None
    log_offset: int = 0  # where the current run's output starts in the log
    probes: dict[str, ProbeState] = field(default_factory=dict)
    terminating_until: float | None = None
    reported: dict[str, Any] | None = None
    oci_name: str | None = None  # the runc container while one runs the pod's image

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def started(self) -> bool:
        """A kubelet's ``started``: running, and past its startup probe if it has one."""
        startup = self.probes.get("startup")
        return self.running and (startup is None or startup.passing)

    @property
    def ready(self) -> bool:
        if not self.running:
            return False
        startup = self.probes.get("startup")
        if startup is not None and not startup.passing:
            return False
        readiness = self.probes.get("readiness")
        return readiness.passing if readiness is not None else True


class PodRunner:
    def __init__(self, config: ClusterConfig, api: k8s.CoreV1Api) -> None:
        self.config = config
        self.api = api
        self.pods: dict[str, LocalPod] = {}
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.stopping = threading.Event()
        self.logs = config.state_dir / "pods"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.host_ip = str(podnet.gateway(config))
        self.relay: ApiRelay | None = None
        self.service_relay: ApiRelay | None = None
        self.built: dict[str, bool] = {}

    # --- API events -------------------------------------------------------------------------

    def watch_pods(self) -> None:
        """List, then watch, forever; every pod seen goes onto the event queue."""
        serializer = self.api.api_client
        while not self.stopping.is_set():
            try:
                body = self.api.list_pod_for_all_namespaces()
                for item in body.items:
                    self.events.put({"type": "SYNC", "object": serializer.sanitize_for_serialization(item)})
                self.events.put({"type": "LISTED", "uids": [item.metadata.uid for item in body.items]})
                stream = watch.Watch().stream(
                    self.api.list_pod_for_all_namespaces,
                    resource_version=body.metadata.resource_version,
                    timeout_seconds=300,
                )
                for event in stream:
                    if self.stopping.is_set():
                        return
                    self.events.put(
                        {"type": event["type"], "object": serializer.sanitize_for_serialization(event["object"])}
                    )
            except (ApiException, Urllib3Error, OSError) as error:
                _log(f"watch interrupted ({error}); listing again")
                time.sleep(1.0)

    def handle(self, event: dict[str, Any]) -> None:
        if event["type"] == "LISTED":
            # Pods deleted while the watch was down produce no DELETED event.
            for gone in set(self.pods) - set(event["uids"]):
                self.finish(self.pods[gone], delete_object=False)
            return
        pod = event["object"]
        uid = pod["metadata"]["uid"]
        local = self.pods.get(uid)
        if event["type"] == "DELETED":
            if local is not None:
                self.finish(local, delete_object=False)
            return
        if local is not None:
            local.pod = pod
            if pod["metadata"].get("deletionTimestamp") and local.terminating_until is None:
                self.terminate(local)
            return
        mapped = self.mapped_container(pod)
        if mapped is None or not pod["spec"].get("nodeName"):
            return
        if pod["metadata"].get("deletionTimestamp"):
            self.delete_object(pod["metadata"]["namespace"], pod["metadata"]["name"])
            return
        if pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
            return
        self.admit(pod, mapped)

    def mapped_container(self, pod: dict[str, Any]) -> dict[str, Any] | None:
        for container in pod["spec"].get("containers") or []:
            if container.get("image") in self.config.pod_commands:
                return dict(container)
        return None

    # --- lifecycle --------------------------------------------------------------------------

    def allocate(self, pod: dict[str, Any]) -> ipaddress.IPv4Address:
        used = {local.address for local in self.pods.values()}
        gateway = podnet.gateway(self.config)
        previous = pod.get("status", {}).get("podIP")
        if previous:
            # A pod's address never changes once reported; reuse it after a restart of the runner.
            address = ipaddress.IPv4Address(previous)
            if address in self.config.process_pod_network and address not in used:
                return address
        for candidate in self.config.process_pod_network.hosts():
            if candidate != gateway and candidate not in used:
                return candidate
        raise podnet.PodNetworkError(f"no free address left in {self.config.process_pod_network}")

    def admit(self, pod: dict[str, Any], container: dict[str, Any]) -> None:
        meta = pod["metadata"]
        address = self.allocate(pod)
        netns = podnet.namespace_name(self.config, meta["uid"])
        podnet.create(self.config, netns, address)
        others = [c for c in pod["spec"]["containers"] if c["name"] != container["name"]]
        local = LocalPod(
            namespace=meta["namespace"],
            name=meta["name"],
            uid=meta["uid"],
            address=address,
            netns=netns,
            container=container,
            others=others,
            command=self.config.pod_commands[container["image"]],
            grace=termination_grace(pod),
            start_time=_now(),
            log_path=self.logs / f"{meta['namespace']}_{meta['name']}.log",
            readiness=ProbeSpec.parse(container.get("readinessProbe"), container),
            liveness=ProbeSpec.parse(container.get("livenessProbe"), container),
            startup=ProbeSpec.parse(container.get("startupProbe"), container),
            pod=pod,
        )
        self.pods[local.uid] = local
        _log(f"{local.namespace}/{local.name}: admitted at {address} ({netns})")
        self.start_process(local)

    def apiserver_for_pods(self) -> str:
        """The apiserver's URL as pods see it: a relay on the pod network's host address, started once."""
        if self.relay is None:
            upstream = urlsplit(self.api.api_client.configuration.host)
            self.relay = ApiRelay(self.host_ip, (upstream.hostname or "127.0.0.1", upstream.port or 443)).start()
            _log(f"apiserver relay for pods on {self.relay.address[0]}:{self.relay.address[1]}")
        host, port = self.relay.address
        return f"https://{host}:{port}"

    def kubernetes_service(self) -> tuple[str, int]:
        """Where containers reach the apiserver: a relay on the pod network's host address, port 443, started once.

        ``/etc/hosts`` of every container names it ``kubernetes.default.svc``, the address in-cluster clients
        such as kopf's ServiceAccount login use (the serving certificate holds that name).
        """
        if self.service_relay is None:
            upstream = urlsplit(self.api.api_client.configuration.host)
            self.service_relay = ApiRelay(
                self.host_ip, (upstream.hostname or "127.0.0.1", upstream.port or 443), port=443
            ).start()
        host, port = self.service_relay.address
        return host, port

    def pod_kubeconfig(self, local: LocalPod) -> Path:
        """Write the pod's ServiceAccount credentials as a kubeconfig (once per pod); raise ApiException."""
        path = self.logs / f"{local.namespace}_{local.name}.kubeconfig"
        if path.is_file():
            return path
        response = self.api.create_namespaced_service_account_token(
            podcredentials.service_account_of(local.pod), local.namespace, podcredentials.token_request(local.pod)
        )
        ca_pem = Pki(self.config.state_dir / "pki").ca_cert.read_bytes()
        document = podcredentials.pod_kubeconfig(
            self.apiserver_for_pods(), ca_pem, response.status.token, local.namespace
        )
        partial = path.with_suffix(".partial")
        partial.touch(mode=0o600)
        partial.write_text(yaml.safe_dump(document, sort_keys=False))
        partial.rename(path)
        return path

    def secret_value(self, namespace: str, name: str, key: str) -> str | None:
        """A key of a Secret, decoded, as a kubelet reads it for ``secretKeyRef``; None when either is missing."""
        try:
            found = self.api.read_namespaced_secret(name, namespace)
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        data = found.data or {}
        return base64.b64decode(data[key]).decode() if key in data else None

    def runs_image(self, local: LocalPod) -> bool:
        """Whether the pod runs its image with runc: container settings, and the image built locally (logged once)."""
        image = local.container["image"]
        if not self.config.run_images or local.command.container is None:
            return False
        if image not in self.built:
            self.built[image] = runc.image_built(image)
            if not self.built[image]:
                _log(f"image {image} is not built locally (make images): its pods run the mapped command")
        return self.built[image]

    def container_argv(self, local: LocalPod) -> list[str]:
        """Write the pod's volumes and its OCI bundle; the ``runc run`` command line.

        Raises ContainerError, UnsupportedVolume, ValueError or ApiException when it cannot be run (yet).
        """
        settings = local.command.container
        assert settings is not None
        image = local.container["image"]
        mapped = {name: os.path.expandvars(path) for name, path in settings.volumes.items()}
        for path in mapped.values():
            Path(path).mkdir(parents=True, exist_ok=True)
        request_user, request_group, _ = podcontainer.security(local.container, local.pod)
        uid, gid = user_ids(
            runc.image_config(image),
            ContainerRequest(run_as_user=request_user, run_as_group=request_group),
        )
        files = podvolumes.write_volumes(
            self.api,
            local.pod,
            podcontainer.file_volumes(local.pod, mapped),
            self.logs / f"{local.namespace}_{local.name}.volumes",
            uid,
            gid,
        )
        env = container_env(local.container, local.pod, str(local.address), self.secret_value)
        env.update({key: os.path.expandvars(value) for key, value in settings.env.items()})
        termination = self.termination_path(local)
        os.chown(termination, uid, gid)
        message_path = str(local.container.get("terminationMessagePath") or "/dev/termination-log")
        extra = [Mount(str(termination), message_path), *self.name_files(local)]
        # In-cluster clients find the apiserver through these (the Service's address is not routed here).
        service_host, service_port = self.kubernetes_service()
        env.update({"KUBERNETES_SERVICE_HOST": service_host, "KUBERNETES_SERVICE_PORT": str(service_port)})
        request = podcontainer.container_request(
            local.pod,
            local.container,
            env,
            podcontainer.plan_volumes(local.pod, mapped, files),
            tuple(extra),
            f"/run/netns/{local.netns}",
        )
        bundle = runc.prepare(image, request, f"{local.netns}-{local.container['name']}"[:60])
        local.oci_name = bundle.name
        return bundle.run_argv()

    def start_process(self, local: LocalPod) -> None:
        if self.runs_image(local):
            self.start_container(local)
            return
        env = dict(os.environ)
        env.pop("KUBECONFIG", None)
        env.pop(SIGNING_KEY_ENV, None)  # the runner's own environment never hands a pod the platform's keys
        if local.command.kubeconfig and podcredentials.wants_token(local.pod):
            try:
                env["KUBECONFIG"] = str(self.pod_kubeconfig(local))
            except ApiException as error:
                # A kubelet reports such a pod as not starting and tries again later.
                local.next_start = time.monotonic() + BACKOFF_START
                _log(
                    f"{local.namespace}/{local.name}: no ServiceAccount token ({error.status} {error.reason}); retrying"
                )
                return
        # Commands resolve `python3` and `modelcluster` from the environment that runs the cluster.
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        try:
            env.update(container_env(local.container, local.pod, str(local.address), self.secret_value))
        except (MissingSecret, ApiException) as error:
            local.next_start = time.monotonic() + BACKOFF_START
            _log(f"{local.namespace}/{local.name}: {error}; retrying")
            return
        # The container's terminationMessagePath, as a file of its own: its content becomes the message.
        termination = self.termination_path(local)
        termination.write_bytes(b"")
        env["TERMINATION_MESSAGE_PATH"] = str(termination)
        # Values of the mapping may name variables of the runner's environment, e.g. ${MODELCLUSTER_CACHE}.
        env.update({key: os.path.expandvars(value) for key, value in local.command.env.items()})
        argv = ["ip", "netns", "exec", local.netns, *local.command.command, *(local.container.get("args") or [])]
        with local.log_path.open("ab") as log:
            local.log_offset = log.tell()
            local.process = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
        self.started(local)
        _log(f"{local.namespace}/{local.name}: started pid {local.process.pid}: {' '.join(argv[4:])}")
        self.report(local)

    def name_files(self, local: LocalPod) -> list[Mount]:
        """/etc/hosts and /etc/resolv.conf as a kubelet writes them. There is no cluster DNS: a lookup fails at
        once inside the pod's network namespace, never a query off the machine (nor a resolver's timeouts)."""
        directory = self.logs / f"{local.namespace}_{local.name}.etc"
        directory.mkdir(exist_ok=True)
        hosts, resolv = directory / "hosts", directory / "resolv.conf"
        hosts.write_text(podcontainer.hosts_file(local.name, str(local.address), self.kubernetes_service()[0]))
        resolv.write_text(podcontainer.RESOLV_CONF)
        return [Mount(str(hosts), "/etc/hosts", read_only=True), Mount(str(resolv), "/etc/resolv.conf", read_only=True)]

    def start_container(self, local: LocalPod) -> None:
        self.termination_path(local).write_bytes(b"")
        try:
            argv = self.container_argv(local)
        except (runc.ContainerError, podcontainer.UnsupportedVolume, ValueError, ApiException) as error:
            local.next_start = time.monotonic() + BACKOFF_START
            _log(f"{local.namespace}/{local.name}: cannot run {local.container['image']}: {error}; retrying")
            return
        with local.log_path.open("ab") as log:
            local.log_offset = log.tell()
            local.process = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
        self.started(local)
        _log(f"{local.namespace}/{local.name}: started {local.container['image']} with runc (pid {local.process.pid})")
        self.report(local)

    def started(self, local: LocalPod) -> None:
        local.started_at = _now()
        now = time.monotonic()
        local.probes = {
            kind: ProbeState(spec=spec, next_at=now + spec.initial_delay)
            for kind, spec in (("startup", local.startup), ("readiness", local.readiness), ("liveness", local.liveness))
            if spec is not None
        }

    def termination_path(self, local: LocalPod) -> Path:
        return self.logs / f"{local.namespace}_{local.name}.termination-log"

    def read_termination_message(self, local: LocalPod, exit_code: int) -> str | None:
        """What a kubelet reports as the message of the run that just ended (file, else log tail on error)."""
        path = self.termination_path(local)
        written = path.read_bytes() if path.is_file() else b""
        with local.log_path.open("rb") as log:
            log.seek(local.log_offset)
            output = log.read()
        policy = str(local.container.get("terminationMessagePolicy") or "File")
        return termination_message(written, output, exit_code, policy)

    def kill_process(self, local: LocalPod, grace: float) -> None:
        process = local.process
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        self.remove_container(local)

    def remove_container(self, local: LocalPod) -> None:
        """runc forwards SIGTERM to the container; after a SIGKILL of runc itself, the container is killed here."""
        if local.oci_name is not None:
            runc.delete(local.oci_name)
            local.oci_name = None

    def terminate(self, local: LocalPod) -> None:
        """Start a graceful stop: SIGTERM now, SIGKILL when the grace period is over.

        Its deletion timestamp alone makes the EndpointSlice controller list the pod as not ready and
        terminating; readiness is still probed meanwhile, as a kubelet does (a draining runtime turns unready).
        """
        local.grace = termination_grace(local.pod)
        local.terminating_until = time.monotonic() + local.grace
        if local.process is not None and local.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(local.process.pid, signal.SIGTERM)
        _log(f"{local.namespace}/{local.name}: terminating (grace {local.grace:.0f}s)")

    def finish(self, local: LocalPod, delete_object: bool) -> None:
        self.kill_process(local, grace=0.0)
        self.remove_container(local)
        shutil.rmtree(self.logs / f"{local.namespace}_{local.name}.volumes", ignore_errors=True)
        shutil.rmtree(self.logs / f"{local.namespace}_{local.name}.etc", ignore_errors=True)
        podnet.delete(local.netns)
        (self.logs / f"{local.namespace}_{local.name}.kubeconfig").unlink(missing_ok=True)
        self.termination_path(local).unlink(missing_ok=True)
        self.pods.pop(local.uid, None)
        if delete_object:
            self.delete_object(local.namespace, local.name, local.uid)
        _log(f"{local.namespace}/{local.name}: stopped and removed")

    def delete_object(self, namespace: str, name: str, uid: str | None = None) -> None:
        options = k8s.V1DeleteOptions(
            grace_period_seconds=0, preconditions=k8s.V1Preconditions(uid=uid) if uid else None
        )
        with contextlib.suppress(ApiException):
            self.api.delete_namespaced_pod(name, namespace, body=options)

    # --- the periodic work of a kubelet -----------------------------------------------------

    def tick(self) -> None:
        now = time.monotonic()
        for local in list(self.pods.values()):
            if local.terminating_until is not None:
                if not local.running or now >= local.terminating_until:
                    self.finish(local, delete_object=True)
                else:
                    self.run_probes(local, now, kinds=("readiness",))
                continue
            if local.process is not None and local.process.poll() is not None:
                self.on_exit(local, now)
            elif local.process is None and now >= local.next_start:
                self.start_process(local)
            if local.running:
                self.run_probes(local, now)

    def on_exit(self, local: LocalPod, now: float) -> None:
        assert local.process is not None
        code = exit_code_of(local.process.returncode)
        local.process = None
        self.remove_container(local)
        local.last_exit_code = code
        local.last_finished_at = _now()
        local.last_started_at = local.started_at
        local.last_message = self.read_termination_message(local, code)
        local.restart_count += 1
        backoff = min(BACKOFF_START * 2 ** (local.restart_count - 1), BACKOFF_MAX)
        local.next_start = now + backoff
        local.probes = {}
        _log(f"{local.namespace}/{local.name}: exited with {code}; restarting in {backoff:.0f}s")
        self.report(local)

    def run_probes(self, local: LocalPod, now: float, kinds: tuple[str, ...] = PROBE_KINDS) -> None:
        changed = False
        startup = local.probes.get("startup")
        for kind in kinds:
            state = local.probes.get(kind)
            if state is None or now < state.next_at:
                continue
            if kind != "startup" and startup is not None and not startup.passing:
                continue
            if kind == "startup" and state.passing:
                continue
            ok, message = check(state.spec, str(local.address))
            changed |= state.record(ok, message, now)
            if kind in ("liveness", "startup") and not ok and state.failed_out:
                _log(f"{local.namespace}/{local.name}: {kind} probe failed: {message}; killing the container")
                self.kill_process(local, grace=min(local.grace, MAX_BLOCKING_GRACE))
                self.on_exit(local, time.monotonic())
                return
        if changed:
            self.report(local)

    def report(self, local: LocalPod) -> None:
        """Write the pod's status when it differs from what was written last."""
        waiting = None if local.running else ("CrashLoopBackOff" if local.restart_count else "ContainerCreating")
        view = ContainerView(
            name=local.container["name"],
            image=local.container["image"],
            running=local.running,
            ready=local.ready,
            restart_count=local.restart_count,
            started_at=local.started_at,
            waiting_reason=waiting,
            last_exit_code=local.last_exit_code,
            last_finished_at=local.last_finished_at,
            last_started_at=local.last_started_at,
            last_message=local.last_message,
            started=local.started,
        )
        status = pod_status(
            view, local.others, str(local.address), self.host_ip, local.start_time, _now(), local.reported
        )
        if status == local.reported:
            return
        try:
            self.api.patch_namespaced_pod_status(local.name, local.namespace, {"status": status})
        except ApiException as error:
            if error.status == 404:
                return
            raise
        local.reported = status
        _log(f"{local.namespace}/{local.name}: ready={view.ready} restarts={view.restart_count}")

    # --- main loop --------------------------------------------------------------------------

    def run(self) -> None:
        for leftover in podnet.namespaces(self.config.netns_prefix):
            podnet.delete(leftover)
        watcher = threading.Thread(target=self.watch_pods, name="watch", daemon=True)
        watcher.start()
        while not self.stopping.is_set():
            if not watcher.is_alive():
                raise RuntimeError("the pod watch stopped unexpectedly")
            try:
                event = self.events.get(timeout=TICK)
            except queue.Empty:
                event = None
            if event is not None:
                self.handle(event)
            self.tick()
        for local in list(self.pods.values()):
            self.kill_process(local, grace=min(local.grace, 5.0))
            self.remove_container(local)
            podnet.delete(local.netns)
        for relay in (self.relay, self.service_relay):
            if relay is not None:
                relay.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--state-dir", type=Path, required=True)
    args = parser.parse_args()
    config = ClusterConfig.model_validate_json((args.state_dir / "config.json").read_text())
    api = k8s.CoreV1Api(k8s_config.new_client_from_config(config_file=str(args.state_dir / "kubeconfig")))
    runner = PodRunner(config, api)
    signal.signal(signal.SIGTERM, lambda *_: runner.stopping.set())
    signal.signal(signal.SIGINT, lambda *_: runner.stopping.set())
    if not config.pod_commands:
        _log("no pod commands configured; every pod is simulated by KWOK")
    runner.run()
    sys.exit(0)


if __name__ == "__main__":
    main()
