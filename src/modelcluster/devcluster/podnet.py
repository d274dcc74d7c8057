"""Network namespaces that give process-backed pods real, non-loopback addresses.

The apiserver refuses loopback addresses in EndpointSlices, so each process-backed pod
gets its own network namespace joined to a host bridge by a veth pair, with an address
from the cluster's private /24. The host reaches pods over the bridge; nothing is
routed beyond this machine. Everything is named after the cluster so leftovers are
found and removed on the next start or stop. Needs root (CAP_NET_ADMIN).
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import signal
import subprocess

from modelcluster.devcluster.config import ClusterConfig


class PodNetworkError(RuntimeError):
    """An `ip` command failed or the privileges to run it are missing."""


def _ip(*args: str, check: bool = True) -> str:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise PodNetworkError(f"ip {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout


def available() -> bool:
    """Process-backed pods need root for network namespaces."""
    return os.geteuid() == 0


def gateway(config: ClusterConfig) -> ipaddress.IPv4Address:
    return next(config.process_pod_network.hosts())


def ensure_bridge(config: ClusterConfig) -> None:
    if not config.pod_commands:
        return
    if not available():
        raise PodNetworkError(
            "process-backed pods need root to create network namespaces; run as root "
            "or start the cluster without pod commands"
        )
    if _ip("link", "show", config.bridge, check=False) == "":
        _ip("link", "add", config.bridge, "type", "bridge")
        _ip("addr", "add", f"{gateway(config)}/{config.process_pod_network.prefixlen}", "dev", config.bridge)
    _ip("link", "set", config.bridge, "up")


def namespace_name(config: ClusterConfig, pod_uid: str) -> str:
    return f"{config.netns_prefix}{pod_uid[:13]}"


def _veth_name(namespace: str) -> str:
    return "mcv" + hashlib.sha256(namespace.encode()).hexdigest()[:11]


def create(config: ClusterConfig, namespace: str, address: ipaddress.IPv4Address) -> None:
    """A namespace with ``eth0`` at ``address`` on the cluster bridge and a default route to the host."""
    delete(namespace)
    veth = _veth_name(namespace)
    prefix = config.process_pod_network.prefixlen
    _ip("netns", "add", namespace)
    _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", namespace)
    _ip("link", "set", veth, "master", config.bridge, "up")
    _ip("-n", namespace, "addr", "add", f"{address}/{prefix}", "dev", "eth0")
    _ip("-n", namespace, "link", "set", "lo", "up")
    _ip("-n", namespace, "link", "set", "eth0", "up")
    _ip("-n", namespace, "route", "add", "default", "via", str(gateway(config)))


def delete(namespace: str) -> None:
    """Kill whatever still runs inside the namespace and remove it (its veth pair goes with it)."""
    if namespace not in namespaces(""):
        return
    for pid in _ip("netns", "pids", namespace, check=False).split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except ProcessLookupError:
            continue
    _ip("netns", "del", namespace, check=False)
    _ip("link", "del", _veth_name(namespace), check=False)


def namespaces(prefix: str) -> list[str]:
    names = [line.split()[0] for line in _ip("netns", "list", check=False).splitlines() if line.strip()]
    return [name for name in names if name.startswith(prefix)]


def remove_all(config: ClusterConfig) -> None:
    if not available():
        return
    for namespace in namespaces(config.netns_prefix):
        delete(namespace)
    _ip("link", "del", config.bridge, check=False)
