"""Graceful drain of a real runtime process: unready at SIGTERM, serving through the delay, streams finish, exit 0."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from runtime_support import free_port

from modelcluster.runtime.server import DrainingServer

from support import eventually

DRAIN_DELAY_S = 3.0  # roomy: the checks made during the delay must fit in it on a busy machine
TOKENS = 4000  # the tiny model allows 4096 positions; the stream must outlast the delay
LONG = {"max_new_tokens": TOKENS, "min_new_tokens": TOKENS, "do_sample": False}


class RuntimeProcess:
    def __init__(self, process: subprocess.Popen[bytes], base_url: str, log: Path) -> None:
        self.process = process
        self.base_url = base_url
        self.log = log

    def health(self) -> httpx.Response:
        return httpx.get(f"{self.base_url}/health", timeout=5)

    def metric(self, name: str) -> float:
        text = httpx.get(f"{self.base_url}/metrics", timeout=5).text
        values = [float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " ")]
        assert values, f"{name} missing from /metrics"
        return values[0]


@pytest.fixture
def runtime_process(generation_models: dict[str, Path], tmp_path: Path) -> Iterator[RuntimeProcess]:
    port = free_port()
    env = {
        **os.environ,
        "DRAIN_DELAY_S": str(DRAIN_DELAY_S),
        "DRAIN_TIMEOUT_S": "120",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "MODEL_DIRS": str(generation_models["causal"].parent),  # a local MODEL_ID lies under a model root
    }
    argv = [sys.executable, "-m", "modelcluster.runtime", "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--model-id", str(generation_models["causal"]), "--task", "text-generation"]
    log = tmp_path / "runtime.log"
    with log.open("wb") as out:
        process = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
    handle = RuntimeProcess(process, f"http://127.0.0.1:{port}", log)

    def ready() -> bool:
        assert process.poll() is None, f"runtime exited early:\n{log.read_text()}"
        try:
            return handle.health().status_code == 200
        except httpx.TransportError:
            return False

    try:
        eventually(ready, 180, 0.02, "runtime process ready")
        yield handle
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)


class Stream:
    """A long SSE generation read on a thread: its events, and the transport error that broke it, if any.

    ``started`` is set once the answer's headers came: the request is in flight (a random tiny model may
    send no text for a while, the streamer waits for a word boundary).
    """

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.events: list[str] = []
        self.broken: httpx.TransportError | None = None
        self.started = threading.Event()
        self.thread = threading.Thread(target=self.read, daemon=True)

    def read(self) -> None:
        body = {"text": "once upon", "params": LONG, "stream": True}
        headers = {"Accept": "text/event-stream"}
        try:
            with (
                httpx.Client(base_url=self.base_url, timeout=120) as client,
                client.stream("POST", "/run", json=body, headers=headers) as response,
            ):
                assert response.status_code == 200
                self.started.set()
                for line in response.iter_lines():
                    if line.startswith("data: "):
                        self.events.append(line.removeprefix("data: "))
        except httpx.TransportError as error:
            self.broken = error

    def start(self) -> Stream:
        self.thread.start()
        assert self.started.wait(60), "the stream did not start"
        return self


class LateRequest:
    """A short generation on a new connection, on a thread; ``sent`` is set once its body is on the wire."""

    def __init__(self, base_url: str) -> None:
        self.client = httpx.Client(base_url=base_url, timeout=120)
        self.sent = threading.Event()
        self.response: httpx.Response | None = None
        self.thread = threading.Thread(target=self.send, daemon=True)

    def trace(self, event: str, info: dict[str, Any]) -> None:
        if event == "http11.send_request_body.complete":
            self.sent.set()

    def send(self) -> None:
        body = {"text": "the cat", "params": {"max_new_tokens": 3, "do_sample": False}}
        with self.client:
            self.response = self.client.post("/run", json=body, extensions={"trace": self.trace})

    def start(self) -> None:
        self.thread.start()


def draining_answer(runtime: RuntimeProcess, within_s: float) -> httpx.Response:
    """The first /health answer that is not 200, polled right after the signal."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        response = runtime.health()
        if response.status_code != 200:
            return response
        time.sleep(0.02)
    raise AssertionError(f"/health still answered 200 {within_s}s after SIGTERM")


def test_sigterm_drains_and_exits_zero(runtime_process: RuntimeProcess) -> None:
    stream = Stream(runtime_process.base_url).start()
    late = LateRequest(runtime_process.base_url)
    assert runtime_process.metric("modelcluster_runtime_draining") == 0
    signalled = time.monotonic()
    runtime_process.process.send_signal(signal.SIGTERM)

    unready = draining_answer(runtime_process, DRAIN_DELAY_S / 2)
    assert unready.status_code == 503
    assert unready.json() == {"error": "draining", "output": None}
    assert runtime_process.metric("modelcluster_runtime_draining") == 1
    # Still accepting: a request on a new connection is admitted during the delay, answered after the stream.
    late.start()
    assert late.sent.wait(DRAIN_DELAY_S), "the late request was not sent within the drain delay"
    assert time.monotonic() - signalled < DRAIN_DELAY_S, "the checks above took longer than the drain delay"

    # Once the delay is over, new connections are refused while the stream goes on.
    def refused() -> bool:
        try:
            runtime_process.health()
        except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError):
            # refused, or closed or reset while waiting in the closed listener's backlog
            return True
        return False

    eventually(refused, 10, 0.02, "new connections refused")
    assert time.monotonic() - signalled >= DRAIN_DELAY_S
    assert stream.thread.is_alive(), "the stream ended before the drain delay was over; make it longer"

    stream.thread.join(timeout=120)
    assert not stream.thread.is_alive()
    assert stream.broken is None
    assert stream.events[-1] == "[DONE]"
    usage = json.loads(stream.events[-2])["usage"]
    assert usage["completion_tokens"] == TOKENS
    deltas = [json.loads(event) for event in stream.events[:-2]]
    assert all(delta["error"] is None for delta in deltas)
    late.thread.join(timeout=60)
    assert late.response is not None and late.response.status_code == 200, late.response
    assert runtime_process.process.wait(timeout=60) == 0, runtime_process.log.read_text()


def test_second_sigterm_exits_at_once(runtime_process: RuntimeProcess) -> None:
    stream = Stream(runtime_process.base_url).start()
    runtime_process.process.send_signal(signal.SIGTERM)
    assert draining_answer(runtime_process, DRAIN_DELAY_S / 2).status_code == 503
    runtime_process.process.send_signal(signal.SIGTERM)
    assert runtime_process.process.wait(timeout=5) == -signal.SIGTERM
    stream.thread.join(timeout=10)
    assert stream.broken is not None
    assert "[DONE]" not in stream.events


def draining_server(delay_s: float) -> tuple[DrainingServer, list[str]]:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("not served in this test")

    drained: list[str] = []
    server = DrainingServer(uvicorn.Config(app), drain_delay_s=delay_s, on_drain=lambda: drained.append("now"))
    return server, drained


async def test_sigterm_turns_unready_at_the_next_tick_and_stops_accepting_after_the_delay() -> None:
    server, drained = draining_server(delay_s=60)
    assert await server.on_tick(1) is False
    assert drained == []
    server.handle_exit(signal.SIGTERM, None)
    assert await server.on_tick(1) is False
    assert await server.on_tick(2) is False
    assert drained == ["now"]
    assert not server.should_exit
    assert server.stop_accepting_at is not None
    server.stop_accepting_at = time.monotonic()  # the delay is over
    assert await server.on_tick(3) is True
    assert server.should_exit and not server.force_exit
    assert drained == ["now"]


async def test_sigint_skips_the_delay() -> None:
    server, drained = draining_server(delay_s=60)
    server.handle_exit(signal.SIGINT, None)
    assert await server.on_tick(1) is True
    assert drained == ["now"]
