"""The provider pass-through benchmark's smoke run: tiny sizes, LiteLLM only when it is installed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_the_benchmark_smoke_prints_its_table() -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "provider_passthrough.py"), "--smoke"],
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    header = next(line for line in lines if line.startswith("| path"))
    assert "added p50" in header
    assert "added TTFT p50" in header
    assert "max req/s" in header
    rows = {line.split("|")[1].strip(): line for line in lines if line.startswith("| ") and line != header}
    assert {"direct", "gateway"} <= set(rows)
    assert rows["gateway"].rstrip(" |").endswith("| 0"), "the gateway answered errors"
    assert any(line.startswith("targets at 20 requests/s") for line in lines)
