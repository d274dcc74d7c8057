"""`cluster up` is idempotent and `cluster down` leaves nothing behind."""

from __future__ import annotations

import os
import socket

import pytest

from modelcluster.devcluster import controlplane, podnet, processes
from modelcluster.devcluster.config import ClusterConfig, PodCommand

pytestmark = pytest.mark.cluster


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


@pytest.mark.skipif(bool(os.environ.get("KUBECONFIG")), reason="exercises the local control plane's own start/stop")
def test_up_twice_is_harmless_and_down_frees_everything() -> None:
    config = ClusterConfig(
        name="lifecycle",
        gpu_nodes=1,
        cpu_nodes=0,
        pod_commands={"example.test/noop:1": PodCommand(command=["true"])},
    )
    controlplane.down(config)
    try:
        first = controlplane.up(config)
        state = controlplane.read_state(config)
        assert state is not None
        pids = [processes.read_pid(config.state_dir / "run", name) for name in controlplane.COMPONENTS]
        assert all(pids)

        again = controlplane.up(config)
        assert again == first
        assert controlplane.read_state(config) == state, "a second start must not restart anything"
        assert [processes.read_pid(config.state_dir / "run", n) for n in controlplane.COMPONENTS] == pids
    finally:
        controlplane.down(config)

    assert all(pid is not None and not processes.alive(pid) for pid in pids)
    assert all(_port_free(port) for port in state["ports"].values())
    assert not controlplane.running(config)
    if podnet.available():
        assert podnet.namespaces(config.netns_prefix) == []
