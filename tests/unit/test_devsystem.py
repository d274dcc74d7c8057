"""``modelcluster dev``: what it prints, what it creates, its log and how it stops its processes."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from modelcluster.api.modelcluster import ModelClusterSpec
from modelcluster.devcluster import devsystem
from modelcluster.devcluster.devlog import FileFollower, PrefixedLog, pod_log_name, prefixed, relay
from modelcluster.devcluster.devsystem import (
    SYSTEM_NAMESPACE,
    Component,
    Ports,
    banner,
    gateway_argv,
    leftover_pids,
    namespaces,
    operator_argv,
    ports_in_use,
    sample_cluster,
    shown_python,
    stop_leftovers,
    try_this,
)

from support import eventually


def test_prefixed_pads_the_name_and_drops_the_line_end() -> None:
    assert prefixed("gateway", "ready\n", 10) == "gateway    | ready"
    assert prefixed("a-longer-name", "x", 4) == "a-longer-name | x"


def test_pod_log_name_is_namespace_and_pod() -> None:
    assert pod_log_name(Path("/x/dev_minilm-abc-12345.log")) == "pod dev/minilm-abc-12345"
    assert pod_log_name(Path("/x/odd.log")) == "pod odd"


def test_relay_copies_every_line_with_its_prefix() -> None:
    out = io.StringIO()
    relay(io.BytesIO(b"one\ntwo\nthree"), "operator", PrefixedLog(out, width=8)).join(timeout=5)
    assert out.getvalue().splitlines() == ["operator | one", "operator | two", "operator | three"]


def test_file_follower_skips_old_lines_holds_partial_ones_and_finds_new_files(tmp_path: Path) -> None:
    old = tmp_path / "dev_a.log"
    old.write_text("before start\n")
    out = io.StringIO()
    follower = FileFollower(tmp_path, "*.log", pod_log_name, PrefixedLog(out, width=3))
    with old.open("a") as handle:
        handle.write("after start\nhalf a ")
    (tmp_path / "dev_b.log").write_text("new file\n")
    follower.poll()
    assert out.getvalue().splitlines() == ["pod dev/a | after start", "pod dev/b | new file"]
    with old.open("a") as handle:
        handle.write("line\n")
    follower.poll()
    assert out.getvalue().splitlines()[-1] == "pod dev/a | half a line"


def test_ports_in_use_names_a_listening_port_only() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("0.0.0.0", 0))
        listener.listen()
        busy = listener.getsockname()[1]
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind(("127.0.0.1", 0))
            free = probe.getsockname()[1]
        taken = ports_in_use(Ports(gateway=busy, operator_health=free, operator_metrics=free, gateway_metrics=free))
    assert taken == [f"gateway (--port) {busy}"]


def test_the_operator_gets_its_lease_namespace_and_the_gateway_its_key_namespace_created() -> None:
    created = {document["metadata"]["name"]: document["metadata"]["labels"] for document in namespaces()}
    assert set(created) == {SYSTEM_NAMESPACE, devsystem.DEV_TENANT}
    # The dev tenant is a tenant namespace (so `keys create --tenant dev` accepts it); the system one is not.
    assert created[devsystem.DEV_TENANT]["modelcluster.dev/tenant"] == devsystem.DEV_TENANT
    assert "modelcluster.dev/tenant" not in created[SYSTEM_NAMESPACE]
    ports = Ports(gateway=9000, operator_health=9001, operator_metrics=9002, gateway_metrics=9003)
    argv = operator_argv(Path("/bin/modelcluster"), "dev", ports)
    assert f"--lease-namespace={SYSTEM_NAMESPACE}" in argv
    assert "--no-leader-elect" not in argv
    # The autoscaler reads the gateway's demand on its metrics port, not on the API port.
    assert {"--health-port=9001", "--metrics-port=9002", "--gateway-metrics-url=http://127.0.0.1:9003/metrics"} <= set(
        argv
    )
    # Loopback only: the dev gateway's API and metrics are not reachable from other machines.
    assert gateway_argv(Path("/bin/modelcluster"), ports)[1:] == [
        "gateway",
        "--host=127.0.0.1",
        "--port=9000",
        "--metrics-port=9003",
        f"--key-namespace={SYSTEM_NAMESPACE}",
    ]


def test_sample_cluster_is_a_valid_spec_in_the_dev_tenant() -> None:
    sample = sample_cluster()
    spec = ModelClusterSpec.model_validate(sample["spec"])
    assert spec.model == "sentence-transformers/all-MiniLM-L6-v2"
    assert spec.capacity.min == 1
    assert sample["metadata"]["namespace"] == devsystem.DEV_TENANT


def test_try_this_uses_the_port_and_offers_the_sdk_only_on_its_dev_port() -> None:
    on_default = try_this(8080, ".venv/bin/python")
    assert "Bytez(" in on_default and "dev=True" in on_default
    assert "http://localhost:8080/models/v2/openai/v1" in on_default
    elsewhere = try_this(9090, "python")
    assert "Bytez(" not in elsewhere
    assert "localhost:8080" in elsewhere  # only in the note on the SDK
    assert elsewhere.count("localhost:9090") == 5
    assert "kubectl get mc -A" in elsewhere


def test_banner_has_the_export_lines_and_says_what_ctrl_c_stops() -> None:
    owned = banner("dev", Path("/k/kubeconfig"), "mc_key", Path("/tools"), "try this:", owns_cluster=True)
    lines = owned.splitlines()
    assert "export KUBECONFIG=/k/kubeconfig" in lines
    assert "export MODELCLUSTER_API_KEY=mc_key" in lines
    assert any(line.startswith("export PATH=/tools:$PATH") for line in lines)
    assert "the model pods and the cluster" in owned
    reused = banner("dev", Path("/k"), "k", Path("/t"), "", owns_cluster=False)
    assert "keeps running" in reused and "cluster down --name dev" in reused


def test_shown_python_is_relative_inside_the_working_directory(tmp_path: Path) -> None:
    assert shown_python(str(tmp_path / ".venv" / "bin" / "python"), tmp_path) == ".venv/bin/python"
    assert shown_python("/usr/bin/python3", tmp_path) == "/usr/bin/python3"


def test_component_relays_its_output_and_stops_on_sigterm() -> None:
    out = io.StringIO()
    script = "import time; print('up', flush=True); time.sleep(60)"
    component = Component("sleeper", [sys.executable, "-c", script], {}, PrefixedLog(out, width=7))
    eventually(lambda: "sleeper | up" in out.getvalue(), timeout=30, what="the component's first line")
    assert component.exited() is None
    assert component.stop(grace=10.0) == -15


def test_component_that_ignores_sigterm_is_killed_after_the_grace() -> None:
    out = io.StringIO()
    script = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(60)"
    )
    component = Component("stubborn", [sys.executable, "-c", script], {}, PrefixedLog(out))
    eventually(lambda: "up" in out.getvalue(), timeout=30, what="the component's first line")
    assert component.stop(grace=0.5) == -9


def test_leftovers_of_an_earlier_run_are_found_by_name_and_stopped(tmp_path: Path) -> None:
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)", "modelcluster", "operator"]
    leftover = subprocess.Popen(sleeper, start_new_session=True)
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    record = tmp_path / "dev-components.json"
    # this test process runs, but it is no operator; a finished process is no leftover either
    record.write_text(json.dumps({"operator": leftover.pid, "gateway": finished.pid, "other": os.getpid()}))
    try:
        assert leftover_pids(record) == {"operator": leftover.pid}
        stop_leftovers(record)
        assert leftover.wait(timeout=20) == -15
        assert not record.exists()
    finally:
        leftover.kill()
        leftover.wait()
