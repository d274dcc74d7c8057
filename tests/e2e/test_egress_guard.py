"""Nothing the local cluster runs sends a packet off this machine.

The session runs under the egress guard of its cluster (see ``tests/conftest.py``): every
process it starts is in the guard's cgroup, and the guard's nftables table records every
packet they send to an address outside loopback and the pod networks. Here the whole system
serves a simulated model and a real one and the autoscaler ticks; the record must not grow.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from modelcluster.devcluster import netguard
from modelcluster.devcluster.config import ClusterConfig
from modelcluster.devcluster.offline_models import MODEL_ID as MINILM

from support import Cluster, GatewayProcess, OperatorProcess, Tenant, eventually

pytestmark = pytest.mark.cluster
SIMULATED = "openai-community/gpt2"  # a catalog model whose image has no pod command: KWOK simulates its pods
START_TIMEOUT = 240
OFF_MACHINE = "203.0.113.9"  # TEST-NET-3: an address outside the machine that nothing here may dial


def ticks(operator: OperatorProcess) -> float:
    found = re.search(r"^modelcluster_autoscaler_tick_seconds_count (\S+)$", operator.metrics(), re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def connect_errno(address: str, port: int) -> int:
    """The errno of a TCP connect from a fresh process (0: it connected)."""
    code = f"import socket, sys\ns = socket.socket(); s.settimeout(5)\nprint(s.connect_ex(({address!r}, {port})))\n"
    return int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)


def test_the_system_serving_a_simulated_and_a_real_model_sends_nothing_off_the_machine(
    cluster: Cluster, operator: OperatorProcess, gateway: GatewayProcess, tenant: Tenant
) -> None:
    assert cluster.local is not None, "the guard belongs to the local control plane"
    before = netguard.report(cluster.local)

    url = f"{gateway.url}/models/v2"
    started = time.monotonic()
    simulated = httpx.post(f"{url}/{SIMULATED}", headers=tenant.headers, json={"text": "Once upon a time"}, timeout=150)
    waited = time.monotonic() - started
    assert simulated.status_code == 503, simulated.text
    body = simulated.json()
    assert body["output"] is None
    pods = ipaddress.ip_network(cluster.local.simulated_pod_cidr)
    named = re.findall(r"\d+\.\d+\.\d+\.\d+", body["error"])
    assert "no runtime for this model" in body["error"] and named, body
    assert all(ipaddress.ip_address(address) in pods for address in named), body
    assert waited < 90, f"the answer came after {waited:.0f}s: it waited for the hold deadline"

    real = httpx.post(f"{url}/{MINILM}", headers=tenant.headers, json={"text": "a cat"}, timeout=START_TIMEOUT)
    assert real.status_code == 200, real.text
    assert len(real.json()["output"]) == 384

    seen = ticks(operator)
    eventually(lambda: ticks(operator) >= seen + 3, timeout=30, what="three autoscaler ticks")
    after = netguard.report(cluster.local)
    assert after == before, f"packets left for: {', '.join(map(str, after.destinations))}"


@pytest.fixture
def probe_guard(cluster: Cluster) -> Iterator[ClusterConfig]:
    """A second guard of its own, so that what the probe records stays out of the session's record."""
    config = ClusterConfig(name="probe")
    netguard.install(config)
    try:
        yield config
    finally:
        netguard.remove(config)


def test_the_guard_refuses_records_and_counts_a_connection_off_the_machine(probe_guard: ClusterConfig) -> None:
    code = (
        "import socket, sys, time\n"
        "sys.stdin.readline()\n"
        "started = time.monotonic()\n"
        "s = socket.socket(); s.settimeout(5)\n"
        f"result = s.connect_ex(({OFF_MACHINE!r}, 80))\n"
        "print(result, time.monotonic() - started)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        netguard.confine(probe_guard, child.pid, stay=False)
        out, _ = child.communicate("go\n", timeout=10)
    finally:
        child.kill()
    result, seconds = out.split()
    assert int(result) in (errno.EHOSTUNREACH, errno.EACCES, errno.ECONNREFUSED), out
    assert float(seconds) < 1.0, "a refused connection must fail at once, not time out"
    found = netguard.report(probe_guard)
    assert found.packets >= 1
    assert netguard.Refusal(OFF_MACHINE, "tcp", 80) in found.destinations


def test_a_closed_range_answers_no_route_at_once(cluster: Cluster) -> None:
    assert cluster.local is not None
    routes = json.loads(subprocess.run(["ip", "-j", "route", "show"], capture_output=True, check=True).stdout)
    closed = {route["dst"] for route in routes if route.get("type") == "unreachable"}
    assert {str(network) for network in netguard.closed_ranges(cluster.local)} <= closed
    for network in netguard.closed_ranges(cluster.local):
        address = str(next(ipaddress.IPv4Network(network).hosts()) + 7)
        started = time.monotonic()
        assert connect_errno(address, 8000) == errno.EHOSTUNREACH, address
        assert time.monotonic() - started < 5


def test_removing_a_guard_removes_its_routes_and_table() -> None:
    config = ClusterConfig(name="gone")
    netguard.install(config)
    assert netguard.installed(config)
    netguard.remove(config)
    assert not netguard.installed(config)
    listing = subprocess.run(["ip", "route", "show"], capture_output=True, text=True, check=True).stdout
    assert f"metric {netguard.route_metric(config)}" not in listing
