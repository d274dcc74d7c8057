"""The ``/run`` pipeline driven directly, without HTTP: errors it raises, answers and streams it returns."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from modelcluster.api.errors import InputError, InternalError, NotReady, PayloadTooLarge
from modelcluster.api.inputs import Payload
from modelcluster.api.streaming import DONE_EVENT, RAW_CONTENT_TYPE, SSE_CONTENT_TYPE
from modelcluster.runtime.batching import Scheduler
from modelcluster.runtime.loading import LoadProgress, load_handler
from modelcluster.runtime.metrics import RuntimeMetrics
from modelcluster.runtime.pipeline import RunPipeline, RunResult
from modelcluster.runtime.settings import RuntimeSettings
from modelcluster.runtime.tasks.base import Handler
from modelcluster.runtime.urlfetch import UrlFetcher


class UpperHandler(Handler):
    """Embeds nothing: answers each text upper-cased; the text ``crash`` breaks ``prepare``."""

    task = "feature-extraction"

    def prepare(self, payload: Payload, media: list[bytes]) -> Any:
        if payload.text == "crash":
            raise RuntimeError("secret state of the handler")
        return payload.text

    def run_batch(self, items: list[Any], params: dict[str, Any]) -> list[Any]:
        return [str(item).upper() for item in items]


@dataclass
class Served:
    """The state the pipeline reads: a loaded handler and its running scheduler (none while loading)."""

    handler: Handler | None = None
    scheduler: Scheduler | None = None
    fetcher: UrlFetcher | None = None

    def ready(self) -> tuple[Handler, Scheduler]:
        if self.handler is None or self.scheduler is None:
            raise NotReady("Model is not ready yet")
        return self.handler, self.scheduler


@pytest.fixture
async def serving() -> AsyncIterator[Callable[..., RunPipeline]]:
    """A pipeline over a handler (a settings' model loaded by ``load_handler`` unless one is given)."""
    schedulers: list[Scheduler] = []

    def start(model_id: Path | str, task: str, handler: Handler | None = None, **overrides: Any) -> RunPipeline:
        if isinstance(model_id, Path):
            overrides.setdefault("model_dirs", [model_id.parent])  # a local MODEL_ID lies under a model root
        settings = RuntimeSettings(model_id=str(model_id), task=task, **overrides)
        handler = handler or load_handler(settings, LoadProgress())
        handler.limits = settings.limits()
        scheduler = Scheduler(
            handler,
            RuntimeMetrics(task, str(model_id)),
            max_queue=settings.max_queue,
            max_batch_size=settings.max_batch_size,
            max_batch_wait_s=0.0,
        )
        scheduler.start()
        schedulers.append(scheduler)
        return RunPipeline(settings, Served(handler, scheduler))

    yield start
    for scheduler in schedulers:
        await scheduler.stop()


def answer_of(result: RunResult) -> Any:
    assert result.status == 200
    assert result.media_type == "application/json"
    assert result.stream is None
    return json.loads(result.content)


async def test_a_body_that_is_not_json_raises_input_error(serving: Callable[..., RunPipeline]) -> None:
    pipeline = serving("stub", "feature-extraction", UpperHandler())
    with pytest.raises(InputError, match="the body is not valid JSON"):
        await pipeline.run(b"{not json")
    with pytest.raises(InputError, match="does not stream"):
        await pipeline.run(b'{"text": "a", "stream": true}')


async def test_a_valid_body_answers_the_handlers_output(serving: Callable[..., RunPipeline]) -> None:
    pipeline = serving("stub", "feature-extraction", UpperHandler())
    result = await pipeline.run(b'{"text": "hello"}', request_id="r1")
    assert answer_of(result) == {"error": None, "output": "HELLO"}
    assert result.headers == {}


async def test_limits_and_failures_are_api_errors(serving: Callable[..., RunPipeline]) -> None:
    pipeline = serving("stub", "feature-extraction", UpperHandler(), max_items=2)
    with pytest.raises(InputError, match="2"):
        await pipeline.run(b'{"text": ["a", "b", "c"]}')
    with pytest.raises(InternalError) as crashed:
        await pipeline.run(b'{"text": "crash"}', request_id="trace-7")
    assert crashed.value.message == "internal error (request trace-7)"
    assert isinstance(crashed.value.__cause__, RuntimeError)


async def test_a_runtime_without_a_model_raises_not_ready() -> None:
    pipeline = RunPipeline(RuntimeSettings(model_id="stub", task="feature-extraction"), Served())
    with pytest.raises(NotReady):
        await pipeline.run(b'{"text": "hello"}')


async def test_a_tiny_classifier_answers_its_labels(
    serving: Callable[..., RunPipeline], text_models: dict[str, Path]
) -> None:
    pipeline = serving(text_models["text-classification"], "text-classification", device="cpu")
    [prediction] = answer_of(await pipeline.run(b'{"input": "a dog ran in the park"}'))["output"]
    assert prediction["label"] in {"NEGATIVE", "POSITIVE"}
    assert 0.0 <= prediction["score"] <= 1.0


async def test_a_generation_streams_raw_or_sse_and_answers_whole_with_usage(
    serving: Callable[..., RunPipeline], generation_models: dict[str, Path]
) -> None:
    pipeline = serving(generation_models["causal"], "text-generation", device="cpu")
    params = {"max_new_tokens": 6, "min_new_tokens": 6, "do_sample": False, "return_full_text": False}
    body = json.dumps({"text": "once upon", "params": params}).encode()
    whole = await pipeline.run(body)
    text = answer_of(whole)["output"]
    assert whole.headers["X-Completion-Tokens"] == "6"
    streamed = json.dumps({"text": "once upon", "params": params, "stream": True}).encode()
    raw = await pipeline.run(streamed)
    assert raw.media_type == RAW_CONTENT_TYPE
    assert raw.headers == {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    assert raw.stream is not None
    assert "".join([chunk async for chunk in raw.stream]) == text
    sse = await pipeline.run(streamed, accept=SSE_CONTENT_TYPE)
    assert sse.media_type == SSE_CONTENT_TYPE
    assert sse.stream is not None
    events = [event async for event in sse.stream]
    assert events[-1] == DONE_EVENT
    assert json.loads(events[-2].removeprefix("data: "))["usage"]["completion_tokens"] == 6


class SizeHandler(Handler):
    """Classifies nothing: answers the size of the decoded image."""

    task = "image-classification"

    def prepare(self, payload: Payload, media: list[bytes]) -> Any:
        return len(media[0])

    def run_batch(self, items: list[Any], params: dict[str, Any]) -> list[Any]:
        return items


async def test_media_is_decoded_within_its_limit(serving: Callable[..., RunPipeline]) -> None:
    pipeline = serving("stub", "image-classification", SizeHandler(), max_media_bytes=1024)
    within = json.dumps({"base64": base64.b64encode(bytes(1000)).decode()}).encode()
    assert answer_of(await pipeline.run(within))["output"] == 1000
    with pytest.raises(PayloadTooLarge):
        await pipeline.run(json.dumps({"base64": base64.b64encode(bytes(2048)).decode()}).encode())
