"""What the gateway adds to a closed-model request, beside the LiteLLM proxy, in one run.

One OpenAI-format stand-in (``tests/support/providers``: ``POST /v1/chat/completions``, plain and streamed, in a
process of its own) is reached three ways with the same load generator, body and answer:

- directly, with the provider key as ``Authorization: Bearer``;
- through the gateway (an in-process gateway app in a process of its own: API key, routing, the OpenAI route,
  the OpenAI translation, ``Provider-Key`` pass-through, per-provider metrics), ``model: openai/gpt-4o-mini``;
- through the LiteLLM proxy (``litellm[proxy]`` in its own environment under
  ``~/.cache/modelcluster/peers/litellm``, one worker, the stand-in as its ``api_base``;
  ``LITELLM_LOCAL_MODEL_COST_MAP=True`` and telemetry off, so it makes no outbound call).

Per path: latency at a constant rate (open loop, ``--rate`` requests/s for ``--duration`` s), plain and streamed
(time to first token: the first content delta), and the maximum throughput (closed loop, ``--concurrency``
connections for ``--duration`` s). Added figures are the path's minus the direct path's. Targets: added p50 and
added time to first token <= 2 ms at 200 requests/s; ahead of LiteLLM on added latency and max requests/s.

    .venv/bin/python benchmarks/provider_passthrough.py                  # 200 requests/s for 5 s per measure
    .venv/bin/python benchmarks/provider_passthrough.py --smoke          # tiny sizes; peers skipped when missing
    .venv/bin/python benchmarks/provider_passthrough.py --install-litellm

The load generator shares the machine's cores with the servers; the load average is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = Path(__file__).resolve()
PEER = Path.home() / ".cache" / "modelcluster" / "peers" / "litellm"
LITELLM_VERSION = "1.108.7"
PROVIDER_KEY = "sk-openai-bench-key-0123456789abcdefXYZW"
LITELLM_MASTER_KEY = "sk-bench-" + "5f" * 24
MESSAGES = [{"role": "user", "content": "Hello my name is Bob and I like to eat"}]


def progress(message: str) -> None:
    print(f"[provider_passthrough] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# --- the servers (each run as `provider_passthrough.py --serve ...` in a process of its own) ------------------


def serve_standin(port: int) -> None:
    sys.path.insert(0, str(REPO / "tests"))
    from aiohttp import web

    from support.providers import StandIn
    from support.providers.openai_format import app

    web.run_app(app(StandIn("openai", PROVIDER_KEY)), host="127.0.0.1", port=port, access_log=None, print=None)


def serve_gateway(port: int, standin: str, api_key: str) -> None:
    sys.path.insert(0, str(REPO / "tests"))
    from aiohttp import web

    from modelcluster.catalog import load_catalog
    from modelcluster.gateway.app import create_app
    from modelcluster.gateway.keys import build_key_secret
    from modelcluster.gateway.keystore import KeyStore
    from modelcluster.gateway.providers.settings import ProviderSettings, ProvidersSettings
    from modelcluster.gateway.server import api_runner
    from modelcluster.gateway.settings import GatewaySettings
    from modelcluster.gateway.state import Gateway

    from support import FakeKube

    async def main() -> None:
        providers = ProvidersSettings(openai=ProviderSettings(base_url=f"{standin}/v1"))  # type: ignore[arg-type]
        settings = GatewaySettings(providers=providers)
        gateway = Gateway(settings=settings, catalog=load_catalog(), kube=FakeKube())
        keys = KeyStore("keys", max_staleness_s=86400.0)
        secret = build_key_secret(api_key, "bench", 100_000, "keys")
        secret["metadata"]["resourceVersion"] = "1"
        keys.reset([secret])
        keys.confirm()
        keys._ready = True
        runner = api_runner(create_app(gateway, keys), settings)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port, backlog=1024).start()
        await asyncio.Event().wait()

    asyncio.run(main())


# --- the peer ----------------------------------------------------------------------------------------------------


def litellm_binary(install: bool) -> Path | None:
    binary = PEER / "bin" / "litellm"
    if binary.exists() or not install:
        return binary if binary.exists() else None
    uv = shutil.which("uv") or str(Path.home() / ".local" / "bin" / "uv")
    progress(f"installing litellm[proxy]=={LITELLM_VERSION} into {PEER} (once)")
    subprocess.run([uv, "venv", "--python", "3.11", str(PEER)], check=True)
    subprocess.run(
        [uv, "pip", "install", "--python", str(PEER / "bin" / "python"), f"litellm[proxy]=={LITELLM_VERSION}"],
        check=True,
    )
    return binary


def litellm_config(work: Path, standin: str) -> Path:
    config = {
        "model_list": [
            {
                "model_name": "gpt-4o-mini",
                "litellm_params": {"model": "openai/gpt-4o-mini", "api_base": f"{standin}/v1", "api_key": PROVIDER_KEY},
            }
        ],
        "litellm_settings": {"telemetry": False, "drop_params": True},
        # The proxy authenticates its callers as the gateway does: one master key, no database.
        "general_settings": {"master_key": LITELLM_MASTER_KEY},
    }
    path = work / "litellm.json"  # YAML is a superset of JSON: the proxy reads it as its config
    path.write_text(json.dumps(config))
    return path


# --- processes ---------------------------------------------------------------------------------------------------


@dataclass
class Processes:
    started: list[tuple[str, subprocess.Popen[bytes], Path]] = field(default_factory=list)

    def start(self, name: str, argv: list[str], work: Path, env: dict[str, str] | None = None) -> None:
        log = work / f"{name}.log"
        process = subprocess.Popen(
            argv, stdout=log.open("wb"), stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )
        self.started.append((name, process, log))

    def stop(self) -> None:
        for _, process, _ in reversed(self.started):
            process.terminate()
        for _, process, _ in self.started:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def check(self, name: str) -> None:
        for started, process, log in self.started:
            if started == name and process.poll() is not None:
                raise SystemExit(f"{name} exited with {process.returncode}; its log:\n{log.read_text()[-3000:]}")


@contextmanager
def running() -> Iterator[Processes]:
    processes = Processes()
    try:
        yield processes
    finally:
        processes.stop()


# --- load --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    name: str
    url: str
    headers: dict[str, str]
    model: str

    def body(self, stream: bool) -> bytes:
        body: dict[str, object] = {"model": self.model, "messages": MESSAGES, "max_tokens": 50}
        if stream:
            body["stream"] = True
        return json.dumps(body).encode()


@dataclass
class Measured:
    latencies: list[float] = field(default_factory=list)
    ttfts: list[float] = field(default_factory=list)
    errors: int = 0
    max_rps: float = 0.0


async def one(session: object, target: Target, stream: bool, measured: Measured) -> None:
    import aiohttp

    assert isinstance(session, aiohttp.ClientSession)
    started = time.perf_counter()
    first: float | None = None
    try:
        async with session.post(target.url, data=target.body(stream), headers=target.headers) as response:
            if stream:
                async for chunk in response.content.iter_any():
                    if first is None and b"Hello" in chunk:
                        first = time.perf_counter()
            else:
                await response.read()
            ok = response.status == 200
    except aiohttp.ClientError:
        ok = False
    if not ok:
        measured.errors += 1
        return
    measured.latencies.append(time.perf_counter() - started)
    if first is not None:
        measured.ttfts.append(first - started)


async def constant_rate(target: Target, rate: int, seconds: float, stream: bool) -> Measured:
    import aiohttp

    measured = Measured()
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        tasks = []
        start = time.perf_counter()
        for index in range(int(rate * seconds)):
            delay = start + index / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(session, target, stream, measured)))
        await asyncio.gather(*tasks)
    return measured


async def maximum(target: Target, concurrency: int, seconds: float) -> float:
    import aiohttp

    measured = Measured()
    deadline = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            while time.perf_counter() < deadline:
                await one(session, target, False, measured)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return len(measured.latencies) / elapsed


async def ready(target: Target, within: float = 60.0) -> None:
    import aiohttp

    deadline = time.monotonic() + within
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            try:
                async with session.post(target.url, data=target.body(False), headers=target.headers) as response:
                    await response.read()
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise SystemExit(f"{target.name} did not answer 200 within {within:.0f}s")


def quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class PathResult:
    plain: Measured
    stream: Measured
    max_rps: float


async def measure(target: Target, args: argparse.Namespace) -> PathResult:
    progress(f"{target.name}: warm-up, {args.rate} requests/s plain and streamed, then maximum")
    await constant_rate(target, args.rate, min(1.0, args.duration), False)
    plain = await constant_rate(target, args.rate, args.duration, False)
    stream = await constant_rate(target, args.rate, args.duration, True)
    max_rps = await maximum(target, args.concurrency, args.duration)
    return PathResult(plain, stream, max_rps)


def ms(value: float) -> str:
    return "n/a" if value != value else f"{value * 1000:.2f}"


def report(results: dict[str, PathResult], args: argparse.Namespace, load: tuple[float, float]) -> None:
    direct = results["direct"]
    print()
    print(
        f"Closed-model pass-through, OpenAI format: {args.rate} requests/s for {args.duration:g} s, "
        f"max with {args.concurrency} connections (load average {load[0]:.2f} -> {load[1]:.2f})"
    )
    header = (
        "path",
        "p50 ms",
        "p99 ms",
        "added p50",
        "added p99",
        "TTFT p50",
        "added TTFT p50",
        "max req/s",
        "max vs direct",
        "errors",
    )
    rows = [header]
    for name, result in results.items():
        p50, p99 = quantile(result.plain.latencies, 0.5), quantile(result.plain.latencies, 0.99)
        ttft = quantile(result.stream.ttfts, 0.5)
        rows.append(
            (
                name,
                ms(p50),
                ms(p99),
                "-" if name == "direct" else ms(p50 - quantile(direct.plain.latencies, 0.5)),
                "-" if name == "direct" else ms(p99 - quantile(direct.plain.latencies, 0.99)),
                ms(ttft),
                "-" if name == "direct" else ms(ttft - quantile(direct.stream.ttfts, 0.5)),
                f"{result.max_rps:.0f}",
                f"{result.max_rps / direct.max_rps:.2f}" if direct.max_rps else "n/a",
                str(result.plain.errors + result.stream.errors),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for index, row in enumerate(rows):
        print("| " + " | ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) + " |")
        if index == 0:
            print("|" + "|".join("-" * (width + 2) for width in widths) + "|")
    if "litellm" in results and "gateway" in results:
        gateway, litellm = results["gateway"], results["litellm"]
        added_gw = quantile(gateway.plain.latencies, 0.5) - quantile(direct.plain.latencies, 0.5)
        added_ll = quantile(litellm.plain.latencies, 0.5) - quantile(direct.plain.latencies, 0.5)
        ratio = added_ll / added_gw if added_gw > 0 else float("inf")
        print(
            f"gateway vs LiteLLM: added p50 {ms(added_gw)} vs {ms(added_ll)} ms ({ratio:.1f}x less); "
            f"max {gateway.max_rps:.0f} vs {litellm.max_rps:.0f} req/s ({gateway.max_rps / litellm.max_rps:.2f}x)"
        )
    gateway = results["gateway"]
    added_p50 = quantile(gateway.plain.latencies, 0.5) - quantile(direct.plain.latencies, 0.5)
    added_ttft = quantile(gateway.stream.ttfts, 0.5) - quantile(direct.stream.ttfts, 0.5)
    print(
        f"targets at {args.rate} requests/s: added p50 {ms(added_p50)} ms (<= 2), added TTFT {ms(added_ttft)} ms (<= 2)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=int, default=200, help="constant rate, requests/s")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measure")
    parser.add_argument("--concurrency", type=int, default=32, help="connections of the maximum-throughput run")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes; LiteLLM skipped when not installed")
    parser.add_argument("--skip-litellm", action="store_true")
    parser.add_argument("--install-litellm", action="store_true", help="install the peer when it is missing")
    parser.add_argument("--serve", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        kind, port, *rest = args.serve
        (serve_standin(int(port)) if kind == "standin" else serve_gateway(int(port), *rest))
        return
    if args.smoke:
        args.rate, args.duration, args.concurrency = 20, 0.5, 4
    litellm = None if args.skip_litellm else litellm_binary(args.install_litellm)
    if litellm is None and not args.skip_litellm:
        progress(f"LiteLLM not installed in {PEER} (--install-litellm installs it): skipped")
    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="provider-bench-") as tmp, running() as processes:
        work = Path(tmp)
        standin_port, gateway_port, litellm_port = free_port(), free_port(), free_port()
        standin = f"http://127.0.0.1:{standin_port}"
        api_key = _api_key()
        python = sys.executable
        env = {"PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
        processes.start("standin", [python, str(SCRIPT), "--serve", "standin", str(standin_port)], work, env)
        processes.start(
            "gateway", [python, str(SCRIPT), "--serve", "gateway", str(gateway_port), standin, api_key], work, env
        )
        targets = [
            Target(
                "direct", f"{standin}/v1/chat/completions", {"Authorization": f"Bearer {PROVIDER_KEY}"}, "gpt-4o-mini"
            ),
            Target(
                "gateway",
                f"http://127.0.0.1:{gateway_port}/models/v2/openai/v1/chat/completions",
                {"Authorization": f"Key {api_key}", "Provider-Key": PROVIDER_KEY},
                "openai/gpt-4o-mini",
            ),
        ]
        if litellm is not None:
            peer_env = {
                "LITELLM_LOCAL_MODEL_COST_MAP": "True",
                "LITELLM_TELEMETRY": "False",
                "LITELLM_DONT_SHOW_FEEDBACK_BOX": "true",
                "NO_PROXY": "*",
            }
            argv = [
                str(litellm),
                "--config",
                str(litellm_config(work, standin)),
                "--host",
                "127.0.0.1",
                "--port",
                str(litellm_port),
                "--num_workers",
                "1",
            ]
            processes.start("litellm", argv, work, peer_env)
            targets.append(
                Target(
                    "litellm",
                    f"http://127.0.0.1:{litellm_port}/v1/chat/completions",
                    {"Authorization": f"Bearer {LITELLM_MASTER_KEY}"},
                    "gpt-4o-mini",
                )
            )
        results: dict[str, PathResult] = {}
        for target in targets:
            asyncio.run(ready(target, within=180))
            processes.check(target.name if target.name != "direct" else "standin")
        for target in targets:
            results[target.name] = asyncio.run(measure(target, args))
    report(results, args, (load_start, os.getloadavg()[0]))


def _api_key() -> str:
    sys.path.insert(0, str(REPO / "src"))
    from modelcluster.gateway.keys import generate_key

    return generate_key()


if __name__ == "__main__":
    main()
