"""A standby runtime process: warm without a model, serving nothing, until an authenticated load call names one."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
from runtime_support import free_port

from modelcluster.api.standby import ADMIN_LOAD_PATH

from support import eventually

TOKEN = "standby-admin-token-for-tests"


def test_a_standby_loads_the_model_it_is_told_and_then_serves_it(minilm_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    token_file = tmp_path / "admin-token"
    token_file.write_text(TOKEN + "\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "DEVICE": "cpu", "MODEL_DIRS": str(minilm_dir.parent)}
    env.update({"STANDBY_FAMILY": "text", "ADMIN_TOKEN_FILE": str(token_file), "TORCH_THREADS": "1"})
    env.pop("MODEL_ID", None)
    env.pop("TASK", None)
    log = tmp_path / "standby.log"
    url = f"http://127.0.0.1:{port}"
    argv = [sys.executable, "-m", "modelcluster.runtime", "--host", "127.0.0.1", "--port", str(port)]
    with log.open("wb") as out:
        process = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)

    def get(path: str) -> httpx.Response:
        assert process.poll() is None, log.read_text()
        return httpx.get(url + path, timeout=5)

    def answers(path: str) -> bool:
        try:
            return get(path).status_code == 200
        except httpx.TransportError:
            return False

    order = {"model_id": str(minilm_dir), "task": "feature-extraction"}
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    try:
        eventually(lambda: answers("/standby"), timeout=300, interval=0.2, what="the standby warm")
        # Warm, and serving nothing: never healthy, no answers.
        health = get("/health")
        assert health.status_code == 503 and "standby" in health.json()["error"]
        assert httpx.post(f"{url}/run", json={"text": "hi"}, timeout=5).status_code == 503
        status = get("/status").json()["output"]
        assert status["status"] == "standby" and status["standby"]["warm"] is True
        assert {"interpreter", "imports", "warmup"} <= set(status["startup"]["phases"])

        # Only the admin token may claim it, and only for a task of its family.
        assert httpx.post(url + ADMIN_LOAD_PATH, json=order, timeout=5).status_code == 401
        wrong = {"Authorization": "Bearer not-the-token"}
        assert httpx.post(url + ADMIN_LOAD_PATH, json=order, headers=wrong, timeout=5).status_code == 401
        other = {**order, "task": "chat"}
        refused = httpx.post(url + ADMIN_LOAD_PATH, json=other, headers=bearer, timeout=5)
        assert refused.status_code == 422 and "llm family" in refused.json()["error"]
        assert httpx.post(url + ADMIN_LOAD_PATH, content=b"{", headers=bearer, timeout=5).status_code == 422
        assert get("/standby").status_code == 200  # still unclaimed after every refusal

        claimed = time.monotonic()
        loading = httpx.post(url + ADMIN_LOAD_PATH, json=order, headers=bearer, timeout=30)
        assert loading.status_code == 202, loading.text
        assert loading.json()["output"]["status"] == "loading"
        eventually(lambda: answers("/health"), timeout=120, interval=0.05, what="the claimed model ready")
        answer = httpx.post(f"{url}/run", json={"text": "a cat sits on the mat"}, timeout=30)
        to_first_answer = time.monotonic() - claimed
        assert answer.status_code == 200 and len(answer.json()["output"]) == 384

        again = httpx.post(url + ADMIN_LOAD_PATH, json=order, headers=bearer, timeout=5)
        assert again.status_code == 409
        assert get("/standby").status_code == 503  # claimed: no longer in the pool
        startup = get("/status").json()["output"]["startup"]
    finally:
        process.terminate()
        process.wait(timeout=60)

    assert startup["path"] == "standby"
    assert {"weights", "warmup", "first_answer"} <= set(startup["phases"])
    # Measured from the claim: no interpreter start, no imports of note (the standby had them).
    assert startup["phases"]["interpreter"] == 0
    assert startup["first_answer_after_s"] <= to_first_answer + 0.5
    print(f"claim -> first answer {to_first_answer:.2f}s; phases {startup['phases']}")
