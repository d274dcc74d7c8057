"""A runtime process reports its own start, phase by phase: in /status, in its log and in /metrics."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
from runtime_support import free_port

from modelcluster.runtime.startup import PHASES

from support import eventually


def test_a_runtime_process_reports_its_start_up_phases(text_models: dict[str, Path], tmp_path: Path) -> None:
    model = text_models["text-classification"]
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "DEVICE": "cpu", "MODEL_DIRS": str(model.parent)}
    argv = [sys.executable, "-m", "modelcluster.runtime", "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--model-id", str(model), "--task", "text-classification"]
    log = tmp_path / "runtime.log"
    url = f"http://127.0.0.1:{port}"
    with log.open("wb") as out:
        process = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:

        def healthy() -> bool:
            assert process.poll() is None, log.read_text()
            try:
                return httpx.get(f"{url}/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        eventually(healthy, timeout=240, interval=0.2, what="the runtime ready")
        before = httpx.get(f"{url}/status", timeout=5).json()["output"]["startup"]
        assert list(before["phases"]) == list(PHASES[:-1])
        assert before["first_answer_after_s"] is None
        assert httpx.post(f"{url}/run", json={"text": "hello"}, timeout=30).status_code == 200
        startup = httpx.get(f"{url}/status", timeout=5).json()["output"]["startup"]
        metrics = httpx.get(f"{url}/metrics", timeout=5).text
    finally:
        process.terminate()
        process.wait(timeout=60)

    assert list(startup["phases"]) == list(PHASES)
    assert all(seconds >= 0 for seconds in startup["phases"].values())
    # The phases add up to the time from the process's start to its first answer.
    assert abs(sum(startup["phases"].values()) - startup["first_answer_after_s"]) < 0.01
    assert startup["ready_after_s"] <= startup["first_answer_after_s"]
    for phase in PHASES:
        assert f'modelcluster_cold_start_seconds_count{{phase="{phase}"}} 1.0' in metrics, phase
    text = log.read_text()
    assert "start-up: interpreter" in text and "first answer" in text
    assert "start-up: imported torch in" in text
