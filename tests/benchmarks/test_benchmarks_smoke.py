"""Every script in ``benchmarks/`` run at tiny sizes (``--smoke``): it completes and prints its table.

Peers that would need installing (nginx, Ray Serve, infinity-emb) are left out by ``--smoke`` itself, which prints
why; the load generators come from ``make bench-tools`` (run by ``make test`` first). The scripts that start a
local cluster of their own (under a name of their own) need root, as the pods live in network namespaces. The
figures are not checked: on a shared machine they say little at these sizes. This only keeps a benchmark from
breaking unnoticed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BENCHMARKS = REPO / "benchmarks"
#: The scripts' own clusters are named after the session's (a name is at most 10 letters and digits).
CLUSTER_STEM = os.environ.get("MODELCLUSTER_TEST_CLUSTER", "test")[:7]


def smoke(script: str, *args: str, timeout: float) -> str:
    """Run ``benchmarks/<script> --smoke``; its output (printed too, so a failure shows it)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "src"), str(REPO / "tests")]))
    env.pop("KUBECONFIG", None)  # the cluster scripts start local clusters of their own
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), "--smoke", *args],
        cwd=BENCHMARKS,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    output = done.stdout + done.stderr
    print(output[-6000:])
    assert done.returncode == 0, f"{script} --smoke exited {done.returncode}:\n{output[-4000:]}"
    return done.stdout


def needs_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: the benchmark's local cluster runs pods in network namespaces")


#: Benchmarks whose smoke run lives with the tests of what they measure.
SMOKED_ELSEWHERE = {"provider_passthrough.py": "tests/providers/test_provider_benchmark.py"}


def test_every_benchmark_has_a_smoke_test() -> None:
    scripts = {path.name for path in BENCHMARKS.glob("*.py")}
    here = {"autoscale.py", "gateway_overhead.py", "operator_scale.py", "runtime_embeddings.py", "standby_wake.py"}
    assert scripts == here | set(SMOKED_ELSEWHERE)
    for script, test in SMOKED_ELSEWHERE.items():
        assert f"{script}" in (REPO / test).read_text(), f"{test} does not run {script}"


def test_standby_wake() -> None:
    out = smoke("standby_wake.py", timeout=600)
    assert "to first answer (seconds)" in out and "standby: load call -> answer" in out
    assert "phases, p50 seconds:" in out


def test_autoscale() -> None:
    out = smoke("autoscale.py", timeout=120)
    assert "figure (seconds)" in out and "tick CPU, 20 clusters / 20 pods" in out
    assert "status writes per active cluster per minute" in out


def test_runtime_embeddings() -> None:
    out = smoke("runtime_embeddings.py", timeout=540)
    assert "(a) runtime rps" in out and "targets:" in out
    assert "infinity-emb skipped: --smoke installs no peer" in out


@pytest.mark.cluster
def test_operator_scale() -> None:
    needs_root()
    out = smoke("operator_scale.py", f"--cluster={CLUSTER_STEM}op", "--runs=2", timeout=600)
    assert "operator time / direct-apply time" in out and "apiserver requests per cluster (operator)" in out
    assert "=== run 2 of 2 ===" in out and "median of 2 runs" in out


@pytest.mark.cluster
def test_gateway_overhead() -> None:
    needs_root()
    # Without its load generators the script exits 1 naming `make bench-tools` (its own check; no copy of it here).
    out = smoke("gateway_overhead.py", f"--cluster={CLUSTER_STEM}gw", timeout=540)
    assert "Targets (gateway):" in out and "bare aiohttp proxy" in out
    assert "Ray Serve proxy" in out and "skipped: --smoke" in out
    assert "Targets (usage ledger on vs off):" in out and "max req/s: on " in out and "added p50: " in out
