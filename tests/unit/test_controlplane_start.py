"""The control plane's start when a port it chose is taken before its component binds it: new ports, again."""

from __future__ import annotations

import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from modelcluster.devcluster import controlplane, processes
from modelcluster.devcluster.config import ClusterConfig


def test_a_component_that_cannot_bind_its_port_reports_the_port_taken(tmp_path: Path) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        code = f"import socket; socket.socket().bind(('127.0.0.1', {port}))"
        processes.start(tmp_path, "etcd", [sys.executable, "-c", code])
        with pytest.raises(controlplane.PortTaken, match=r"(?i)address already in use"):
            controlplane._wait("etcd", lambda: False, tmp_path, "etcd", timeout=30)


def test_a_component_that_fails_otherwise_is_not_retried(tmp_path: Path) -> None:
    processes.start(tmp_path, "etcd", [sys.executable, "-c", "raise SystemExit('bad flag')"])
    with pytest.raises(RuntimeError, match="bad flag") as raised:
        controlplane._wait("etcd", lambda: False, tmp_path, "etcd", timeout=30)
    assert not isinstance(raised.value, controlplane.PortTaken)


class Starts:
    """``_start`` failing the first ``taken`` times with a taken port (or with another error)."""

    def __init__(self, taken: int, other: BaseException | None = None) -> None:
        self.taken, self.other = taken, other
        self.calls, self.downs, self.guards = 0, 0, 0

    def start(self, config: ClusterConfig, binaries: object) -> None:
        self.calls += 1
        if self.calls <= self.taken:
            raise controlplane.PortTaken("etcd exited during start:\nbind: address already in use")
        if self.other is not None:
            raise self.other


@pytest.fixture
def starts(monkeypatch: pytest.MonkeyPatch) -> Starts:
    found = Starts(0)
    monkeypatch.setattr(controlplane, "running", lambda config: False)
    monkeypatch.setattr(controlplane, "read_state", lambda config: None)
    monkeypatch.setattr(controlplane, "ensure_binaries", lambda: object())
    monkeypatch.setattr(controlplane, "_start", lambda config, binaries: found.start(config, binaries))

    def down(config: ClusterConfig) -> None:
        found.downs += 1

    def guard(config: ClusterConfig) -> None:
        found.guards += 1

    monkeypatch.setattr(controlplane, "down", down)
    monkeypatch.setattr(controlplane, "guard", guard)
    return found


@pytest.mark.parametrize("taken", [0, 1, controlplane.START_ATTEMPTS - 1])
def test_a_taken_port_starts_the_cluster_again_with_new_ports(starts: Starts, taken: int) -> None:
    starts.taken = taken
    config = ClusterConfig(name="porttaken")
    assert controlplane.up(config) == config.kubeconfig
    assert (starts.calls, starts.downs, starts.guards) == (taken + 1, taken, taken + 1)


def test_a_port_taken_every_time_fails_after_the_last_attempt(starts: Starts) -> None:
    starts.taken = controlplane.START_ATTEMPTS
    with pytest.raises(controlplane.PortTaken):
        controlplane.up(ClusterConfig(name="porttaken"))
    assert starts.calls == starts.downs == controlplane.START_ATTEMPTS


def test_another_failure_stops_what_started_and_is_not_retried(starts: Starts) -> None:
    starts.other = TimeoutError("kube-apiserver not ready after 120s")
    with pytest.raises(TimeoutError):
        controlplane.up(ClusterConfig(name="porttaken"))
    assert (starts.calls, starts.downs) == (1, 1)


def test_a_component_not_waited_for_that_lost_its_port_is_found_at_the_end(tmp_path: Path) -> None:
    alive = [sys.executable, "-c", "import time; time.sleep(30)"]
    for name in controlplane.COMPONENTS:
        if name != "kube-scheduler":
            processes.start(tmp_path, name, alive)
    try:
        code = "raise SystemExit('listen tcp 127.0.0.1:10259: bind: address already in use')"
        processes.start(tmp_path, "kube-scheduler", [sys.executable, "-c", code])
        with pytest.raises(controlplane.PortTaken, match="kube-scheduler"):
            eventually_raises(lambda: controlplane._all_running(tmp_path))
    finally:
        for name in controlplane.COMPONENTS:
            processes.stop(tmp_path, name)


def eventually_raises(check: Callable[[], None], timeout: float = 30.0) -> None:
    """Run ``check`` until it raises (the failing process has to exit first), at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        check()
        time.sleep(0.05)
    raise AssertionError(f"no error within {timeout:g} s")
