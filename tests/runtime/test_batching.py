"""Batching: items counted against the batch limit, failures kept to their own request, length bucketing,
no wait for a lone client, zero-shot batched like the pipeline answers it one by one."""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from runtime_support import ServerHandle

from modelcluster.api.errors import InputError
from modelcluster.api.inputs import Payload
from modelcluster.runtime.batching import Scheduler, split_for_retry
from modelcluster.runtime.bucketing import padded_tokens, pass_overhead_tokens, plan_passes
from modelcluster.runtime.loading import LoadProgress
from modelcluster.runtime.metrics import RuntimeMetrics
from modelcluster.runtime.offload import OFF_LOOP_BYTES, OFF_LOOP_ITEMS, off_loop, render_off_loop
from modelcluster.runtime.queueing import Job, batch_target, select_batch
from modelcluster.runtime.settings import RuntimeSettings
from modelcluster.runtime.tasks.base import Handler

from support import eventually

# --- pure decisions -------------------------------------------------------------------------------------------


def flatten(passes: list[list[int]]) -> list[int]:
    return sorted(index for indices in passes for index in indices)


def test_uniform_lengths_stay_in_one_pass() -> None:
    assert plan_passes([20] * 32, max_pass=32) == [list(range(32))]


def test_a_long_text_does_not_pad_the_short_ones() -> None:
    lengths = [12] * 31 + [256]
    passes = plan_passes(lengths, max_pass=32, overhead=16)
    assert passes == [list(range(31)), [31]]
    assert sum(padded_tokens([lengths[i] for i in p]) for p in passes) < padded_tokens(lengths) / 10


def test_mixed_lengths_are_grouped_in_length_order_within_the_pass_limit() -> None:
    lengths = [(7 * i) % 200 + 1 for i in range(70)]
    passes = plan_passes(lengths, max_pass=32, overhead=16)
    assert flatten(passes) == list(range(70))
    assert all(1 <= len(indices) <= 32 for indices in passes)
    ordered = [lengths[i] for indices in passes for i in indices]
    assert ordered == sorted(lengths)
    single_pass_cost = sum(padded_tokens(lengths[i : i + 32]) for i in range(0, 70, 32))
    assert sum(16 + padded_tokens([lengths[i] for i in p]) for p in passes) < single_pass_cost * 0.7


def test_a_large_pass_overhead_keeps_a_batch_together() -> None:
    lengths = [10, 12, 14, 60]
    assert plan_passes(lengths, max_pass=32, overhead=pass_overhead_tokens("cuda")) == [[0, 1, 2, 3]]
    assert len(plan_passes(lengths, max_pass=32, overhead=pass_overhead_tokens("cpu"))) == 2
    assert plan_passes([], max_pass=8) == []
    with pytest.raises(ValueError):
        plan_passes([1], max_pass=0)


def make_job(size: int = 1, key: str = "{}") -> Job:
    loop = asyncio.new_event_loop()
    try:
        return Job(item=None, params={}, key=key, future=loop.create_future(), enqueued_at=0.0, size=size)
    finally:
        loop.close()


def test_the_batch_limit_counts_items() -> None:
    jobs = [make_job(20), make_job(20), make_job(5), make_job(8), make_job(1)]
    assert select_batch(jobs, 32, batchable=True) == [0, 2, 4]  # 20 + 5 + 1; the second 20 and the 8 wait
    assert select_batch([make_job(40), make_job(1)], 32, batchable=True) == [0]  # the oldest always runs
    assert select_batch([make_job(1) for _ in range(40)], 32, batchable=True) == list(range(32))
    assert batch_target(ready=20, preparing=0, last_batch_size=1, max_size=32) == 20
    assert batch_target(ready=1, preparing=0, last_batch_size=1, max_size=32) == 1


def test_failed_calls_are_retried_in_halves() -> None:
    jobs = [make_job() for _ in range(5)]
    assert split_for_retry(jobs) == [jobs[:3], jobs[3:]]
    assert split_for_retry(jobs[:1]) == [jobs[:1], []]


def test_big_inputs_and_outputs_leave_the_event_loop() -> None:
    assert not off_loop(2_000)
    assert off_loop(OFF_LOOP_BYTES + 1)
    assert not render_off_loop(1)
    assert render_off_loop(OFF_LOOP_ITEMS + 1)


# --- the scheduler with a stub model --------------------------------------------------------------------------


class StubHandler(Handler):
    """Answers each item upper-cased; ``poison`` breaks the whole call, ``bad`` fails only its own item, ``hold``
    keeps the model busy until ``release`` is set."""

    task = "feature-extraction"

    def __init__(self) -> None:
        self.calls: list[list[Any]] = []
        self.release = threading.Event()

    def prepare(self, payload: Payload, media: list[bytes]) -> Any:
        return payload.text

    def item_count(self, item: Any) -> int:
        return len(item) if isinstance(item, list) else 1

    def run_batch(self, items: list[Any], params: dict[str, Any]) -> list[Any]:
        self.calls.append(list(items))
        if "hold" in items:
            self.release.wait(30)
        if "poison" in items:
            raise RuntimeError("the forward pass failed")
        return [InputError(f"cannot embed {item}") if item == "bad" else str(item).upper() for item in items]


async def run_jobs(handler: StubHandler, items: list[Any], max_batch: int = 32, wait_s: float = 0.5) -> list[Any]:
    metrics = RuntimeMetrics("feature-extraction", "stub")
    scheduler = Scheduler(handler, metrics, max_queue=64, max_batch_size=max_batch, max_batch_wait_s=wait_s)
    jobs = []
    for item in items:
        scheduler.queue.reserve()
        job = scheduler.new_job(item, {}, stream=False, deadline=time.monotonic() + 30)
        scheduler.submit(job)
        jobs.append(job)
    scheduler.start()
    try:
        return await asyncio.gather(*(job.future for job in jobs), return_exceptions=True)
    finally:
        await scheduler.stop()


async def test_an_item_that_breaks_the_call_fails_only_its_own_request() -> None:
    handler = StubHandler()
    results = await run_jobs(handler, ["a", "b", "poison", "c", "d", "e"])
    assert results[:2] == ["A", "B"]
    assert isinstance(results[2], RuntimeError)
    assert results[3:] == ["C", "D", "E"]
    assert handler.calls[0] == ["a", "b", "poison", "c", "d", "e"]  # one batched call first
    assert len(handler.calls) <= 1 + 2 * math.ceil(math.log2(6)) + 1  # halves, not one call per request


async def test_a_per_item_error_fails_only_its_request_without_a_retry() -> None:
    handler = StubHandler()
    results = await run_jobs(handler, ["a", "bad", "c"])
    assert results[0] == "A" and results[2] == "C"
    assert isinstance(results[1], InputError)
    assert handler.calls == [["a", "bad", "c"]]


async def test_the_scheduler_counts_items_against_the_batch_limit() -> None:
    handler = StubHandler()
    twenty = [f"t{i}" for i in range(20)]
    await run_jobs(handler, [twenty, list(twenty), ["x"] * 5], max_batch=32)
    sizes = [sum(len(item) for item in call) for call in handler.calls]
    assert sizes == [25, 20]


async def test_a_lone_request_does_not_wait_for_a_batch() -> None:
    handler = StubHandler()
    started = time.monotonic()
    assert await run_jobs(handler, ["alone"], wait_s=5.0) == ["ALONE"]
    assert time.monotonic() - started < 2.0  # far below the 5 s batch wait


def test_over_http_a_poisoned_request_fails_alone_and_the_server_keeps_serving(
    serve: Callable[..., ServerHandle],
) -> None:
    stub = StubHandler()

    def loader(settings: RuntimeSettings, progress: LoadProgress) -> Handler:
        return stub

    server = serve("stub", "feature-extraction", loader=loader)
    texts = ["one", "two", "poison", "four", "bad", "six"]
    with ThreadPoolExecutor(len(texts) + 1) as pool, httpx.Client(base_url=server.base_url, timeout=30) as client:
        holding = pool.submit(client.post, "/run", json={"text": "hold"})
        eventually(lambda: stub.calls == [["hold"]], 10, 0.02, "the model to be busy")
        futures = [pool.submit(client.post, "/run", json={"text": text}) for text in texts]
        eventually(lambda: server.metric("modelcluster_runtime_queue_depth") == len(texts), 10, 0.02, "a full queue")
        stub.release.set()
        answers = [future.result() for future in futures]
        assert holding.result().json()["output"] == "HOLD"
    by_text = dict(zip(texts, answers, strict=True))
    for text in ("one", "two", "four", "six"):
        assert by_text[text].status_code == 200, by_text[text].text
        assert by_text[text].json() == {"error": None, "output": text.upper()}
    assert by_text["poison"].status_code == 500
    assert by_text["poison"].json()["error"].startswith("internal error (request ")
    assert by_text["bad"].status_code == 422
    assert by_text["bad"].json()["error"] == "cannot embed bad"
    assert sorted(stub.calls[1]) == sorted(texts)  # the six ran as one batch first
    assert server.metric("modelcluster_runtime_batch_retries_total") >= 1
    with server.client() as client:
        assert client.post("/run", json={"text": "after"}).json()["output"] == "AFTER"


# --- real models ----------------------------------------------------------------------------------------------


def test_zero_shot_batches_and_answers_as_the_pipeline_does(text_models: dict[str, Path]) -> None:
    from transformers import pipeline

    from modelcluster.runtime.tasks.text import ZeroShotHandler

    pipe = pipeline("zero-shot-classification", model=str(text_models["zero-shot-classification"]), device="cpu")
    handler = ZeroShotHandler(pipe)
    requests = [
        ("the weather is nice today", ["weather", "sports", "cats"]),
        ("a long text about football matches and the teams that played them last sunday", ["sports", "food"]),
        ("cats", ["animals"]),
    ]
    items = [handler.prepare(Payload(text=text, candidate_labels=labels), []) for text, labels in requests]
    assert [handler.item_count(item) for item in items] == [3, 2, 1]
    for multi_label in (False, True):
        params = handler.check_params({"multi_label": multi_label})
        batched = handler.run_batch(items, params)
        for (text, labels), output in zip(requests, batched, strict=True):
            expected = pipe(text, candidate_labels=labels, multi_label=multi_label)
            assert output["sequence"] == text
            assert sorted(output["labels"]) == sorted(labels)
            got = dict(zip(output["labels"], output["scores"], strict=True))
            want = dict(zip(expected["labels"], expected["scores"], strict=True))
            for label in labels:
                assert math.isclose(got[label], want[label], rel_tol=1e-3, abs_tol=1e-5)
    with pytest.raises(InputError, match="hypothesis_template"):
        handler.check_params({"hypothesis_template": "no placeholder"})


def test_embeddings_of_mixed_lengths_match_one_by_one(serve: Callable[..., ServerHandle], minilm_dir: Path) -> None:
    from sentence_transformers import SentenceTransformer

    server = serve(minilm_dir, "feature-extraction", max_batch_wait_ms=50)
    texts = [" ".join(["word"] * n) for n in (1, 150, 3, 90, 2, 40)]
    with server.client() as client:
        response = client.post("/run", json={"text": texts})
        assert response.status_code == 200, response.text
        vectors = response.json()["output"]
        single = client.post("/run", json={"text": texts[1]}).json()["output"]
    model = SentenceTransformer(str(minilm_dir), device="cpu")
    expected = model.encode(texts, batch_size=1).tolist()
    assert len(vectors) == len(texts)
    for got, want in zip(vectors, expected, strict=True):
        assert max(abs(a - b) for a, b in zip(got, want, strict=True)) < 1e-4
    assert max(abs(a - b) for a, b in zip(single, expected[1], strict=True)) < 1e-4
