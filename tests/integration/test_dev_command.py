"""``modelcluster dev`` end to end: it serves with a working key, and Ctrl-C leaves nothing running."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import httpx
import pytest

from modelcluster.devcluster import controlplane, processes
from modelcluster.devcluster.config import ClusterConfig
from modelcluster.devcluster.controlplane import free_port
from modelcluster.devcluster.devsystem import READY_TIMEOUT_S

from support import eventually

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parent.parent.parent


def _collect(stream: IO[bytes] | None, lines: list[str]) -> threading.Thread:
    def read() -> None:
        assert stream is not None
        for raw in stream:
            lines.append(raw.decode(errors="replace").rstrip("\n"))

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread


def _exported(lines: list[str], name: str) -> str | None:
    for line in lines:
        match = re.fullmatch(rf"export {name}=(\S+)", line)
        if match:
            return match.group(1)
    return None


@pytest.fixture
def config() -> Iterator[ClusterConfig]:
    """A cluster of its own, its state directory removed afterwards."""
    config = ClusterConfig(name=f"dv{uuid.uuid4().hex[:8]}")
    try:
        yield config
    finally:
        controlplane.down(config)
        shutil.rmtree(config.state_dir, ignore_errors=True)


def test_dev_serves_with_its_key_and_ctrl_c_stops_everything_it_started(config: ClusterConfig) -> None:
    ports = [free_port() for _ in range(4)]
    executable = Path(sys.executable).with_name("modelcluster")
    argv = [str(executable), "dev", f"--name={config.name}", "--no-sample"]
    argv += [f"--port={ports[0]}", f"--health-port={ports[1]}", f"--metrics-port={ports[2]}"]
    argv += [f"--gateway-metrics-port={ports[3]}"]
    process = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out: list[str] = []
    err: list[str] = []
    readers = [_collect(process.stdout, out), _collect(process.stderr, err)]
    try:

        def exported_key() -> str | None:
            if process.poll() is not None:
                raise AssertionError(f"dev exited with {process.returncode}:\n" + "\n".join(err[-40:]))
            return _exported(out, "MODELCLUSTER_API_KEY")

        try:
            # past dev's own readiness deadline, so that dev says what was not ready before the test gives up
            key = eventually(exported_key, timeout=READY_TIMEOUT_S + 120, what="the export lines")
        except AssertionError as failure:
            raise AssertionError(f"{failure}\n" + "\n".join(err[-40:])) from None
        assert not any("not serving after" in line for line in err), "\n".join(err[-60:])
        assert _exported(out, "KUBECONFIG") == str(config.kubeconfig)
        assert any(line.startswith("operator   | ") for line in err), "no operator lines in the log"
        assert any(line.startswith("gateway    | ") for line in err), "no gateway lines in the log"
        base = f"http://127.0.0.1:{ports[0]}/models/v2"
        answer = httpx.get(f"{base}/list/clusters", headers={"Authorization": f"Key {key}"}, timeout=10)
        assert answer.status_code == 200, answer.text
        assert httpx.get(f"{base}/list/clusters", headers={"Authorization": "Key nope"}, timeout=10).status_code == 401
        assert httpx.get(f"http://127.0.0.1:{ports[1]}/healthz", timeout=10).status_code == 200
        assert httpx.get(f"http://127.0.0.1:{ports[3]}/metrics", timeout=10).status_code == 200
        assert httpx.get(f"http://127.0.0.1:{ports[0]}/metrics", timeout=10).status_code == 404
        run_dir = config.state_dir / "run"
        pids = [processes.read_pid(run_dir, component) for component in controlplane.COMPONENTS]
        assert all(pids), f"cluster processes not all running: {pids}"
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=120) == 0, "\n".join(err[-30:])
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    for reader in readers:
        reader.join(timeout=10)
    assert not controlplane.running(config)
    assert [pid for pid in pids if pid is not None and processes.alive(pid)] == []
    for port in ports:
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/", timeout=5)
    log = "\n".join(err)
    assert "gateway stopped (exit code 0)" in log and "operator stopped (exit code 0)" in log
