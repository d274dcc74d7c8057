"""Token usage of generations: headers on whole answers, a last SSE event before [DONE], none in the raw stream."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from runtime_support import ServerHandle

from modelcluster.api.streaming import TokenUsage, usage_event
from modelcluster.runtime.batching import Scheduler
from modelcluster.runtime.llm_engine import VllmHandler, output_usage
from modelcluster.runtime.metrics import RuntimeMetrics
from modelcluster.runtime.pipeline import collect_text, stream_body, usage_headers
from modelcluster.runtime.tasks.generation import TokenCounter

EXACT = {"do_sample": False, "max_new_tokens": 6, "min_new_tokens": 6}
MESSAGES = [{"role": "user", "content": "Hello my name is Bob"}]


def usage_of(response: httpx.Response) -> TokenUsage:
    return TokenUsage(int(response.headers["X-Prompt-Tokens"]), int(response.headers["X-Completion-Tokens"]))


def sse_data(response: httpx.Response) -> list[str]:
    return [line.removeprefix("data: ") for line in response.iter_lines() if line.startswith("data: ")]


def usage_line(usage: TokenUsage) -> str:
    return json.dumps(
        {
            "error": None,
            "output": "",
            "usage": {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens},
        }
    )


@pytest.fixture(scope="module")
def tokenizers(generation_models: dict[str, Path]) -> dict[str, Any]:
    from transformers import AutoTokenizer

    return {name: AutoTokenizer.from_pretrained(str(path)) for name, path in generation_models.items()}


@pytest.fixture(scope="module")
def text_generation(serve: Callable[..., ServerHandle], generation_models: dict[str, Path]) -> ServerHandle:
    return serve(generation_models["causal"], "text-generation")


@pytest.fixture(scope="module")
def chat(serve: Callable[..., ServerHandle], generation_models: dict[str, Path]) -> ServerHandle:
    return serve(generation_models["causal"], "chat")


def test_text_generation_answer_carries_usage_headers(
    text_generation: ServerHandle, tokenizers: dict[str, Any]
) -> None:
    prompt_tokens = len(tokenizers["causal"]("the cat sat")["input_ids"])
    with text_generation.client() as client:
        exact = client.post("/run", json={"text": "the cat sat", "params": EXACT})
        assert exact.status_code == 200, exact.text
        assert usage_of(exact) == TokenUsage(prompt_tokens, 6)
        capped = client.post("/run", json={"text": "the cat sat", "params": {"max_tokens": 4}})
        assert capped.status_code == 200, capped.text
        usage = usage_of(capped)
    assert usage.prompt_tokens == prompt_tokens
    assert 0 < usage.completion_tokens <= 4


def test_chat_prompt_tokens_count_the_chat_template(chat: ServerHandle, tokenizers: dict[str, Any]) -> None:
    tokenizer = tokenizers["causal"]
    templated = tokenizer.apply_chat_template(MESSAGES, add_generation_prompt=True, return_dict=True)["input_ids"]
    plain = tokenizer(MESSAGES[0]["content"])["input_ids"]
    assert len(templated) > len(plain)
    with chat.client() as client:
        response = client.post("/run", json={"messages": MESSAGES, "params": {"max_tokens": 5}})
        assert response.status_code == 200, response.text
    assert response.json()["output"]["role"] == "assistant"
    usage = usage_of(response)
    assert usage.prompt_tokens == len(templated)
    assert 0 < usage.completion_tokens <= 5


def test_seq2seq_answer_carries_usage_headers(
    serve: Callable[..., ServerHandle], generation_models: dict[str, Path], tokenizers: dict[str, Any]
) -> None:
    server = serve(generation_models["seq2seq"], "summarization")
    text = "a dog ran in the park with a ball"
    with server.client() as client:
        response = client.post("/run", json={"text": text, "params": EXACT})
        assert response.status_code == 200, response.text
    assert usage_of(response) == TokenUsage(len(tokenizers["seq2seq"](text, truncation=True)["input_ids"]), 6)


def test_sse_stream_ends_with_usage_then_done(chat: ServerHandle, tokenizers: dict[str, Any]) -> None:
    with chat.client() as client:
        whole = client.post("/run", json={"messages": MESSAGES, "params": EXACT})
        with client.stream(
            "POST",
            "/run",
            json={"messages": MESSAGES, "params": EXACT, "stream": True},
            headers={"Accept": "text/event-stream"},
        ) as response:
            assert response.status_code == 200
            assert "X-Prompt-Tokens" not in response.headers
            events = sse_data(response)
    assert events[-1] == "[DONE]"
    last = json.loads(events[-2])
    seconds = last.pop("inference_seconds")
    assert isinstance(seconds, float) and seconds > 0
    assert json.dumps(last) == usage_line(usage_of(whole))
    assert float(whole.headers["X-Inference-Seconds"]) > 0
    deltas = [json.loads(event) for event in events[:-2]]
    assert deltas
    assert all(set(delta) == {"error", "output"} for delta in deltas)
    assert "".join(delta["output"] for delta in deltas) == whole.json()["output"]["content"]


def test_raw_stream_has_no_usage(text_generation: ServerHandle) -> None:
    params = {**EXACT, "return_full_text": False}
    with text_generation.client() as client:
        whole = client.post("/run", json={"text": "once upon", "params": params})
        with client.stream("POST", "/run", json={"text": "once upon", "params": params, "stream": True}) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/plain")
            assert "X-Completion-Tokens" not in response.headers
            raw = response.read().decode()
    assert usage_of(whole).completion_tokens == 6
    assert raw == whole.json()["output"]
    assert "usage" not in raw
    assert "[DONE]" not in raw


def test_answers_of_other_tasks_carry_no_usage(
    serve: Callable[..., ServerHandle], text_models: dict[str, Path]
) -> None:
    server = serve(text_models["text-classification"], "text-classification")
    with server.client() as client:
        response = client.post("/run", json={"text": "the cat sat on the mat"})
        assert response.status_code == 200, response.text
    assert "X-Prompt-Tokens" not in response.headers
    assert "X-Completion-Tokens" not in response.headers


def test_usage_headers_and_event() -> None:
    usage = TokenUsage(prompt_tokens=7, completion_tokens=3)
    assert usage_headers(usage) == {"X-Prompt-Tokens": "7", "X-Completion-Tokens": "3"}
    assert usage_headers(None) == {}
    assert (
        usage_event(usage)
        == 'data: {"error": null, "output": "", "usage": {"prompt_tokens": 7, "completion_tokens": 3}}\n\n'
    )


def test_token_counter_skips_the_prompt_and_counts_every_generated_id() -> None:
    import torch

    class Recorder:
        def __init__(self) -> None:
            self.puts: list[list[int]] = []
            self.ended = False

        def put(self, value: Any) -> None:
            self.puts.append(value.flatten().tolist())

        def end(self) -> None:
            self.ended = True

    recorder = Recorder()
    counter = TokenCounter(recorder)
    counter.put(torch.tensor([[5, 6, 7, 8]]))  # the prompt
    assert counter.generated == 0
    counter.put(torch.tensor([9]))  # one step
    counter.put(torch.tensor([[10, 11]]))  # several accepted at once (assisted decoding)
    counter.end()
    assert counter.generated == 3
    assert recorder.puts == [[5, 6, 7, 8], [9], [10, 11]]
    assert recorder.ended


def vllm_output(prompt: list[int] | None, text: str, ids: list[int]) -> Any:
    return SimpleNamespace(prompt_token_ids=prompt, outputs=[SimpleNamespace(text=text, token_ids=ids)])


class FakeEngine:
    """vLLM's AsyncLLM as the handler uses it: cumulative outputs per request, and abort."""

    def __init__(self, outputs: list[Any]) -> None:
        self.outputs = outputs
        self.aborted: list[str] = []

    async def generate(self, prompt: str, sampling: Any, request_id: str) -> AsyncIterator[Any]:
        for output in self.outputs:
            await asyncio.sleep(0)
            yield output

    async def abort(self, request_id: str) -> None:
        self.aborted.append(request_id)


def vllm_handler(engine: FakeEngine) -> VllmHandler:
    return VllmHandler("text-generation", engine, tokenizer=None, sampling_params_class=dict)


def test_vllm_output_usage() -> None:
    assert output_usage(vllm_output([1, 2, 3], "hi", [4, 5])) == TokenUsage(3, 2)
    assert output_usage(vllm_output(None, "", [])) == TokenUsage(0, 0)
    assert output_usage(SimpleNamespace(prompt_token_ids=[1], outputs=[])) == TokenUsage(1, 0)


async def test_vllm_stream_ends_with_the_usage_of_its_last_output() -> None:
    engine = FakeEngine([vllm_output([1, 2, 3], "he", [7]), vllm_output([1, 2, 3], "hello", [7, 8, 9])])
    items = [item async for item in vllm_handler(engine).astream("hi", {"max_new_tokens": 3}, lambda: False)]
    assert items == ["he", "llo", TokenUsage(3, 3)]
    assert engine.aborted == []


async def test_stopped_vllm_stream_aborts_without_usage() -> None:
    engine = FakeEngine([vllm_output([1, 2], "he", [7]), vllm_output([1, 2], "hello", [7, 8])])
    items = [item async for item in vllm_handler(engine).astream("hi", {}, lambda: True)]
    assert items == ["he"]
    assert len(engine.aborted) == 1


def scheduled(handler: VllmHandler) -> tuple[Scheduler, Callable[[], Any]]:
    scheduler = Scheduler(
        handler, RuntimeMetrics("text-generation", "fake"), max_queue=4, max_batch_size=1, max_batch_wait_s=0.0
    )

    def submit() -> Any:
        scheduler.queue.reserve()
        job = scheduler.new_job("hi", {}, stream=True, deadline=None)
        scheduler.submit(job)
        return job

    return scheduler, submit


async def test_concurrent_engine_usage_reaches_the_answer_and_the_sse_stream() -> None:
    outputs = [vllm_output([1, 2, 3, 4], "a", [5]), vllm_output([1, 2, 3, 4], "ab", [5, 6])]
    scheduler, submit = scheduled(vllm_handler(FakeEngine(outputs)))
    assert await collect_text(submit(), 10) == ("ab", TokenUsage(4, 2))
    sse = [event async for event in stream_body(submit(), True, 10)]
    assert sse[-1] == "data: [DONE]\n\n"
    last = json.loads(sse[-2].removeprefix("data: "))
    assert last.pop("inference_seconds") >= 0
    assert json.dumps(last) == usage_line(TokenUsage(4, 2))
    raw = [event async for event in stream_body(submit(), False, 10)]
    assert raw == ["a", "b"]
    await scheduler.stop()
