"""Keep every packet of the local cluster on this machine: closed address ranges and an egress guard.

Two layers, installed by ``cluster up`` and removed by ``cluster down``:

- **Closed ranges.** Every address range the cluster hands out without a process behind it
  (KWOK's simulated pods and nodes, the Service ClusterIPs) gets an ``unreachable`` route,
  so a connection to such an address fails at once on this machine ("No route to host")
  instead of following the default route to whatever host answers there.
- **Egress guard.** An nftables table rejects, counts and records every packet that the
  cluster's processes send to an address outside loopback and the process-pod networks.
  The processes are told apart by their cgroup (v2): ``cluster up`` moves the calling
  process into ``modelcluster/<name>``, and everything it starts (the control plane, the
  pod runner and its model pods; the operator and gateway of ``modelcluster dev``; a test
  session and all it runs) inherits it. Packets that pod network namespaces send (on any local
  cluster's bridge) towards anything but the pod networks are counted and dropped as they
  enter the host.

The refused destinations stay in the table's set until ``cluster down``;
``modelcluster cluster egress`` prints them. Without root, the ``ip`` and ``nft`` commands or
a cgroup v2 hierarchy under ``/sys/fs/cgroup`` the cluster refuses to start rather than leak.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from modelcluster.devcluster.config import ClusterConfig

CGROUP_ROOT = Path("/sys/fs/cgroup")
CGROUP_PARENT = "modelcluster"
LOOPBACK = ipaddress.IPv4Network("127.0.0.0/8")
POD_NETWORKS = ipaddress.IPv4Network("10.250.0.0/16")  # every cluster's process-pod /24 lies in it
ROUTE_METRIC_BASE = 4000
BRIDGES = "mcbr-*"  # every local cluster's pod bridge (ClusterConfig.bridge)
_ELEMENT = re.compile(r"(?P<address>[0-9a-f.:]+) \. (?P<protocol>\w+) \. (?P<port>\d+)")
_COUNTER = re.compile(r"counter packets (?P<packets>\d+)")


class NetGuardError(RuntimeError):
    """The closed ranges or the egress guard cannot be installed; the cluster must not start."""


@dataclass(frozen=True)
class Refusal:
    """One destination a process of the cluster tried to reach off the machine."""

    address: str
    protocol: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{self.protocol} {host}:{self.port}"


@dataclass(frozen=True)
class Report:
    """What the egress guard refused so far: packets counted and the distinct destinations."""

    packets: int
    destinations: tuple[Refusal, ...]

    @property
    def clean(self) -> bool:
        return self.packets == 0 and not self.destinations


# Pure decisions --------------------------------------------------------------------------------


def closed_ranges(config: ClusterConfig) -> tuple[ipaddress.IPv4Network, ...]:
    """The address ranges the cluster hands out with no process behind them."""
    return tuple(
        ipaddress.IPv4Network(cidr)
        for cidr in (config.simulated_pod_cidr, config.simulated_node_cidr, config.service_cidr)
    )


def route_metric(config: ClusterConfig) -> int:
    """A metric of this cluster's own: clusters of other names keep their routes when it goes down."""
    return ROUTE_METRIC_BASE + int(hashlib.sha256(config.name.encode()).hexdigest(), 16) % 1000


def table_name(config: ClusterConfig) -> str:
    return f"modelcluster_{config.name}"


def cgroup_relative(config: ClusterConfig) -> str:
    return f"{CGROUP_PARENT}/{config.name}"


def conflicting_routes(config: ClusterConfig, routes: Sequence[dict[str, object]]) -> list[str]:
    """Routes of others (``ip -j route show``) that lie inside a closed range and would win over ours."""
    metric = route_metric(config)
    found: list[str] = []
    for route in routes:
        dst = str(route.get("dst", ""))
        if dst in ("", "default"):
            continue
        try:
            network = ipaddress.ip_network(dst, strict=False)
        except ValueError:
            continue
        if not isinstance(network, ipaddress.IPv4Network):
            continue
        ours = route.get("type") == "unreachable" and route.get("metric") == metric
        if ours:
            continue
        for closed in closed_ranges(config):
            inside = network.subnet_of(closed)
            if inside and (network.prefixlen > closed.prefixlen or route.get("type") != "unreachable"):
                found.append(f"{dst} ({route.get('dev') or route.get('type') or 'route'})")
    return found


def ruleset(config: ClusterConfig, cgroup_path: str) -> str:
    """The nftables table of the egress guard, in nft's own syntax (every part validated, nothing from users)."""
    if not re.fullmatch(r"[A-Za-z0-9_./-]+", cgroup_path):
        raise NetGuardError(f"unexpected cgroup path {cgroup_path!r}")
    level = len(Path(cgroup_relative(config)).parts)
    owner = f'socket cgroupv2 level {level} "{cgroup_path}"'
    allowed = ", ".join(str(network) for network in (LOOPBACK, POD_NETWORKS))
    table = table_name(config)
    bridge = BRIDGES
    return "\n".join(
        (
            f"table inet {table} {{",
            f"  set allowed4 {{ type ipv4_addr; flags interval; elements = {{ {allowed} }}; }}",
            "  set refused4 { type ipv4_addr . inet_proto . inet_service; flags dynamic; size 65536; }",
            "  set refused6 { type ipv6_addr . inet_proto . inet_service; flags dynamic; size 65536; }",
            "  chain output {",
            "    type filter hook output priority filter; policy accept;",
            f"    {owner} meta nfproto ipv4 ip daddr != @allowed4 meta l4proto {{ tcp, udp }}"
            " add @refused4 { ip daddr . meta l4proto . th dport }",
            f"    {owner} meta nfproto ipv6 ip6 daddr != ::1 meta l4proto {{ tcp, udp }}"
            " add @refused6 { ip6 daddr . meta l4proto . th dport }",
            f"    {owner} meta nfproto ipv4 ip daddr != @allowed4 counter reject with icmpx admin-prohibited",
            f"    {owner} meta nfproto ipv6 ip6 daddr != ::1 counter reject with icmpx admin-prohibited",
            "  }",
            "  chain prerouting {",
            "    type filter hook prerouting priority filter; policy accept;",
            f'    iifname "{bridge}" meta nfproto ipv4 ip daddr != @allowed4 meta l4proto {{ tcp, udp }}'
            " add @refused4 { ip daddr . meta l4proto . th dport }",
            f'    iifname "{bridge}" meta nfproto ipv4 ip daddr != @allowed4 meta l4proto {{ tcp, udp }} counter drop',
            f'    iifname "{bridge}" meta nfproto ipv6 meta l4proto {{ tcp, udp }}'
            " add @refused6 { ip6 daddr . meta l4proto . th dport }",
            f'    iifname "{bridge}" meta nfproto ipv6 meta l4proto {{ tcp, udp }} counter drop',
            "  }",
            "}",
            "",
        )
    )


def parse_report(listing: str) -> Report:
    """Counters and set elements from ``nft list table`` output."""
    packets = sum(int(match["packets"]) for match in _COUNTER.finditer(listing))
    destinations = sorted(
        {
            Refusal(match["address"], match["protocol"], int(match["port"]))
            for match in _ELEMENT.finditer(listing.replace("\n", " "))
        },
        key=str,
    )
    return Report(packets, tuple(destinations))


# I/O at the edges ------------------------------------------------------------------------------


def _run(argv: Sequence[str], stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    try:
        result = subprocess.run(list(argv), input=stdin, capture_output=True, text=True, check=False)
    except FileNotFoundError as error:
        raise NetGuardError(f"{argv[0]} is not installed: {error}") from error
    if check and result.returncode != 0:
        raise NetGuardError(f"{' '.join(argv)}: {result.stderr.strip() or result.stdout.strip()}")
    return result


def cgroup2_mount(mounts: Iterable[str] | None = None) -> Path | None:
    """Where the cgroup v2 hierarchy is mounted (``/sys/fs/cgroup`` or ``/sys/fs/cgroup/unified``)."""
    lines = mounts if mounts is not None else Path("/proc/self/mounts").read_text().splitlines()
    for line in lines:
        fields = line.split()
        if len(fields) >= 3 and fields[2] == "cgroup2":
            return Path(fields[1])
    return None


def _cgroup_dir(config: ClusterConfig) -> tuple[Path, str]:
    """The cluster's cgroup directory and its path as nft names it (relative to /sys/fs/cgroup)."""
    mount = cgroup2_mount()
    if mount is None:
        raise NetGuardError("no cgroup v2 hierarchy is mounted; the egress guard tells the cluster's processes by it")
    try:
        below = mount.relative_to(CGROUP_ROOT)
    except ValueError as error:
        raise NetGuardError(f"cgroup v2 is mounted at {mount}, not under {CGROUP_ROOT}, where nft looks") from error
    return mount / cgroup_relative(config), str(below / cgroup_relative(config))


def check_prerequisites() -> None:
    """Raise a clear error when this machine cannot close the ranges and guard egress."""
    missing = [tool for tool in ("ip", "nft") if shutil.which(tool) is None]
    if os.geteuid() != 0:
        raise NetGuardError(
            "the local cluster must run as root: it installs unreachable routes for its simulated address ranges "
            "and an nftables egress guard so that nothing it runs sends a packet off this machine"
        )
    if missing:
        raise NetGuardError(
            f"{' and '.join(missing)} not found: install iproute2 and nftables (apt-get install iproute2 nftables); "
            "the local cluster will not start without its egress guard"
        )


def install(config: ClusterConfig) -> bool:
    """Close the ranges and install the egress guard; False when it was installed already (its record is kept)."""
    check_prerequisites()
    routes = json.loads(_run(["ip", "-j", "route", "show"]).stdout or "[]")
    conflicts = conflicting_routes(config, routes)
    if conflicts:
        raise NetGuardError(
            "routes of this machine lie inside the local cluster's address ranges "
            f"({', '.join(str(r) for r in closed_ranges(config))}): {', '.join(conflicts)}; "
            "simulated addresses would reach them, so the cluster does not start"
        )
    metric = str(route_metric(config))
    for network in closed_ranges(config):
        _run(["ip", "route", "replace", "unreachable", str(network), "metric", metric])
    directory, nft_path = _cgroup_dir(config)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise NetGuardError(f"cannot create the cgroup {directory}: {error}") from error
    if _run(["nft", "list", "table", "inet", table_name(config)], check=False).returncode == 0:
        return False
    _run(["nft", "-f", "-"], stdin=ruleset(config, nft_path))
    return True


def installed(config: ClusterConfig) -> bool:
    return (
        shutil.which("nft") is not None
        and _run(["nft", "list", "table", "inet", table_name(config)], check=False).returncode == 0
    )


def guarded(proc_cgroup: str) -> bool:
    """Whether a ``/proc/<pid>/cgroup`` text puts the process under some local cluster's guard."""
    return any(
        line.startswith("0::/") and line[3:].strip().startswith(f"/{CGROUP_PARENT}/")
        for line in proc_cgroup.splitlines()
    )


def confine(config: ClusterConfig, pid: int | None = None, *, stay: bool = True) -> None:
    """Put a process (this one by default) and all it will start under the cluster's egress guard.

    With ``stay``, a process already under the guard of some local cluster stays where it is,
    so a test session that starts further clusters keeps one record for all of them.
    """
    pid = os.getpid() if pid is None else pid
    if stay and guarded(Path(f"/proc/{pid}/cgroup").read_text()):
        return
    directory, _ = _cgroup_dir(config)
    try:
        (directory / "cgroup.procs").write_text(f"{pid}\n")
    except OSError as error:
        raise NetGuardError(f"cannot move process {pid} into the cgroup {directory}: {error}") from error


def report(config: ClusterConfig) -> Report:
    """What the guard refused since it was installed (nothing when it is not installed)."""
    listing = _run(["nft", "list", "table", "inet", table_name(config)], check=False)
    return parse_report(listing.stdout) if listing.returncode == 0 else Report(0, ())


def remove(config: ClusterConfig) -> None:
    """Remove the routes, the guard's table and its (empty) cgroup."""
    if os.geteuid() != 0:
        return
    metric = str(route_metric(config))
    for network in closed_ranges(config):
        _run(["ip", "route", "del", "unreachable", str(network), "metric", metric], check=False)
    if shutil.which("nft") is not None:
        _run(["nft", "delete", "table", "inet", table_name(config)], check=False)
    with contextlib.suppress(NetGuardError, OSError):
        directory, _ = _cgroup_dir(config)
        directory.rmdir()  # fails while a process is still inside; the empty directory is harmless


class RefusalWatch:
    """New refusals since the last look, for a log that names them as they happen."""

    def __init__(self, config: ClusterConfig) -> None:
        self.config = config
        self.seen: set[Refusal] = set()

    def new(self) -> list[Refusal]:
        fresh = [refusal for refusal in report(self.config).destinations if refusal not in self.seen]
        self.seen.update(fresh)
        return fresh
