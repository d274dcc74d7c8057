"""Generation over a real uvicorn server: plain, streamed (raw and SSE), disconnect, timeout, overflow."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from runtime_support import ServerHandle

from support import eventually

LONG = {"max_new_tokens": 3000, "min_new_tokens": 3000, "do_sample": False}


@pytest.fixture(scope="module")
def gpt2(serve: Callable[..., ServerHandle], generation_models: dict[str, Path]) -> ServerHandle:
    return serve(generation_models["causal"], "text-generation")


def test_text_generation_returns_prompt_and_continuation(gpt2: ServerHandle) -> None:
    with gpt2.client() as client:
        response = client.post("/run", json={"text": "the cat", "params": {"max_new_tokens": 5, "do_sample": False}})
        assert response.status_code == 200, response.text
        output = response.json()["output"]
        assert isinstance(output, str)
        assert output.startswith("the cat")
        only_new = client.post(
            "/run", json={"text": "the cat", "params": {"max_tokens": 5, "do_sample": False, "return_full_text": False}}
        ).json()["output"]
        assert output == "the cat" + only_new


def test_raw_stream_matches_plain_output(gpt2: ServerHandle) -> None:
    params = {"max_new_tokens": 20, "min_new_tokens": 20, "do_sample": False, "return_full_text": False}
    with gpt2.client() as client:
        plain = client.post("/run", json={"text": "once upon", "params": params}).json()["output"]
        chunks = []
        with client.stream("POST", "/run", json={"text": "once upon", "params": params, "stream": True}) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/plain")
            chunks = list(response.iter_text())
    assert len(chunks) >= 1
    assert "".join(chunks) == plain


def test_sse_stream(gpt2: ServerHandle) -> None:
    params = {"max_new_tokens": 8, "do_sample": False}
    with (
        gpt2.client() as client,
        client.stream(
            "POST",
            "/run",
            json={"text": "the dog", "params": params, "stream": True},
            headers={"Accept": "text/event-stream"},
        ) as response,
    ):
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [line[len("data: ") :] for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    deltas = [json.loads(event) for event in events[:-1]]
    assert deltas
    assert all(delta["error"] is None and isinstance(delta["output"], str) for delta in deltas)


def test_disconnect_stops_generation(gpt2: ServerHandle) -> None:
    cancelled_before = gpt2.metric("modelcluster_runtime_streams_cancelled_total")
    chunks_before = gpt2.metric("modelcluster_runtime_stream_chunks_total")
    body = json.dumps({"text": "the cat", "params": LONG, "stream": True}).encode()
    host, port = gpt2.base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        request = (
            f"POST /run HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        sock.sendall(request)
        first = sock.recv(4096)
        assert b"200 OK" in first
    # the socket is closed: the generation must stop long before 3000 tokens
    eventually(
        lambda: gpt2.metric("modelcluster_runtime_streams_cancelled_total") > cancelled_before,
        timeout=30,
        interval=0.02,
        what="generation to stop",
    )
    eventually(
        lambda: gpt2.metric("modelcluster_runtime_in_flight_requests") == 0, timeout=30, interval=0.02, what="idle"
    )
    streamed = gpt2.metric("modelcluster_runtime_stream_chunks_total") - chunks_before
    assert streamed < 2500


def test_timeout_answers_504_and_frees_the_model(
    serve: Callable[..., ServerHandle], generation_models: dict[str, Path]
) -> None:
    server = serve(generation_models["causal"], "text-generation", request_timeout_s=0.5)
    started = time.monotonic()
    with server.client() as client:
        response = client.post("/run", json={"text": "the cat", "params": LONG})
        assert response.status_code == 504
        assert response.json() == {"error": "the request took longer than 0.5s", "output": None}
        assert time.monotonic() - started < 10
        quick = client.post("/run", json={"text": "the cat", "params": {"max_new_tokens": 2}})
        assert quick.status_code == 200, quick.text


def test_queue_overflow_answers_429_at_once(
    serve: Callable[..., ServerHandle], generation_models: dict[str, Path]
) -> None:
    server = serve(generation_models["causal"], "text-generation", max_queue=1)
    with server.client() as streaming, server.client() as waiting, server.client() as extra:
        with streaming.stream("POST", "/run", json={"text": "a", "params": LONG, "stream": True}) as running:
            assert running.status_code == 200
            eventually(
                lambda: server.metric("modelcluster_runtime_in_flight_requests") == 1,
                interval=0.02,
                what="stream running",
            )
            queued: dict[str, httpx.Response] = {}
            thread = threading.Thread(
                target=lambda: queued.setdefault(
                    "r", waiting.post("/run", json={"text": "b", "params": {"max_new_tokens": 2}})
                )
            )
            thread.start()
            eventually(
                lambda: server.metric("modelcluster_runtime_queue_depth") == 1, interval=0.02, what="one request queued"
            )
            started = time.monotonic()
            overflow = extra.post("/run", json={"text": "c", "params": {"max_new_tokens": 2}})
            assert time.monotonic() - started < 2
            assert overflow.status_code == 429
            assert overflow.json()["output"] is None
            assert "queue is full" in overflow.json()["error"]
        # leaving the stream early cancels it; the queued request then runs
        thread.join(timeout=60)
        assert queued["r"].status_code == 200, queued["r"].text
    assert server.metric("modelcluster_runtime_errors_total", 'kind="queue_full"') == 1


def test_chat(serve: Callable[..., ServerHandle], generation_models: dict[str, Path]) -> None:
    server = serve(generation_models["causal"], "chat")
    messages = [{"role": "user", "content": "Hello my name is Bob"}]
    with server.client() as client:
        response = client.post("/run", json={"messages": messages, "params": {"max_tokens": 6}})
        assert response.status_code == 200, response.text
        output = response.json()["output"]
        assert output["role"] == "assistant"
        assert isinstance(output["content"], str)
        via_sdk = client.post("/run", json={"input": messages, "params": {"max_tokens": 3}})
        assert via_sdk.status_code == 200, via_sdk.text
        wrong = client.post("/run", json={"text": "hello"})
        assert wrong.status_code == 422


@pytest.mark.parametrize("task", ["summarization", "text2text-generation", "translation"])
def test_seq2seq_answers_a_string_and_streams_it(
    serve: Callable[..., ServerHandle],
    generation_models: dict[str, Path],
    tiny_model: Callable[[str], Path],
    task: str,
) -> None:
    """Bart for summarization and text2text-generation, T5 for translation."""
    server = serve(tiny_model("t5") if task == "translation" else generation_models["seq2seq"], task)
    body = {"text": "a dog ran in the park with a ball", "params": {"max_new_tokens": 6, "min_new_tokens": 3}}
    with server.client() as client:
        response = client.post("/run", json=body)
        assert response.status_code == 200, response.text
        output = response.json()["output"]
        assert isinstance(output, str) and output
        with client.stream("POST", "/run", json={**body, "stream": True}) as streamed:
            assert streamed.status_code == 200
            assert streamed.headers["content-type"].startswith("text/plain")
            chunks = [chunk for chunk in streamed.iter_text() if chunk]
    assert chunks
    assert "".join(chunks) == output, "greedy decoding: the stream spells the whole answer"
