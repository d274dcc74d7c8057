"""Pure functions: input normalization, batching and queue decisions, device/dtype/engine choice, span decoding."""

from __future__ import annotations

import asyncio
import base64

import pytest

from modelcluster.api import inputs
from modelcluster.api.errors import InputError, PayloadTooLarge, QueueFull
from modelcluster.api.inference import Message, RunRequest
from modelcluster.api.inputs import normalize
from modelcluster.api.tasks import TASKS
from modelcluster.runtime.generation_params import rename_aliases
from modelcluster.runtime.llm_engine import choose_engine, to_sampling_params
from modelcluster.runtime.loading import resolve_device, resolve_dtype
from modelcluster.runtime.media import decode_base64, resample
from modelcluster.runtime.queueing import Job, RequestQueue, batch_target, select_batch
from modelcluster.runtime.tasks import LOADERS, resolve_loader
from modelcluster.runtime.tasks.text import best_span

ISSUE_TASKS = [
    "text-generation",
    "chat",
    "text2text-generation",
    "summarization",
    "translation",
    "fill-mask",
    "text-classification",
    "token-classification",
    "zero-shot-classification",
    "question-answering",
    "feature-extraction",
    "sentence-similarity",
    "image-classification",
    "object-detection",
    "image-segmentation",
    "image-to-text",
    "image-feature-extraction",
    "zero-shot-image-classification",
    "zero-shot-object-detection",
    "visual-question-answering",
    "document-question-answering",
    "depth-estimation",
    "mask-generation",
    "audio-classification",
    "automatic-speech-recognition",
    "text-to-speech",
    "text-to-audio",
    "text-to-image",
    "unconditional-image-generation",
    "video-classification",
    "text-to-video",
    "image-text-to-text",
    "audio-text-to-text",
    "video-text-to-text",
]


def test_registry_covers_every_task_and_loaders_import() -> None:
    assert set(ISSUE_TASKS) == set(TASKS) == set(LOADERS)
    for task in ISSUE_TASKS:
        assert callable(resolve_loader(task))
    with pytest.raises(ValueError, match="unknown task"):
        resolve_loader("text-to-smell")


@pytest.mark.parametrize(
    ("body", "spec", "expected"),
    [
        ({"input": "hello"}, inputs.TEXT, {"text": "hello"}),
        ({"input": ["a", "b"]}, inputs.TEXT, {"text": ["a", "b"]}),
        ({"input": "https://x.test/a.png"}, inputs.media_spec("image"), {"url": "https://x.test/a.png"}),
        ({"input": "aGVsbG8="}, inputs.media_spec("image"), {"base64": "aGVsbG8="}),
        ({"input": {"question": "q", "context": "c"}}, inputs.QUESTION_CONTEXT, {"question": "q", "context": "c"}),
        ({"url": "http://h/i.png", "question": "q"}, inputs.media_spec("image", "question"), {"question": "q"}),
    ],
)
def test_normalize_accepts(body: dict[str, object], spec: inputs.InputSpec, expected: dict[str, object]) -> None:
    payload = normalize(RunRequest.model_validate(body), "task", spec)
    for key, value in expected.items():
        assert getattr(payload, key) == value


def test_normalize_string_input_for_chat_becomes_a_user_message() -> None:
    payload = normalize(RunRequest.model_validate({"input": "hi"}), "chat", inputs.MESSAGES)
    assert payload.messages == [Message(role="user", content="hi")]


@pytest.mark.parametrize(
    ("body", "spec", "message"),
    [
        ({}, inputs.TEXT, "needs `text`"),
        ({"text": "a", "input": "b"}, inputs.TEXT, "both give text"),
        ({"text": []}, inputs.TEXT, "empty list"),
        ({"text": "a", "candidate_labels": []}, inputs.TEXT_LABELS, "`candidate_labels` is empty"),
        ({"input": {"colour": "red"}}, inputs.TEXT, "unknown input field"),
        ({"input": {"text": 3}}, inputs.TEXT, "invalid input"),
        ({"messages": []}, inputs.MESSAGES, "`messages` is empty"),
        ({"url": "u", "base64": "b"}, inputs.media_spec("image"), "only one of"),
        ({"question": "q"}, inputs.QUESTION_CONTEXT, "missing `context`"),
    ],
)
def test_normalize_rejects(body: dict[str, object], spec: inputs.InputSpec, message: str) -> None:
    with pytest.raises(InputError, match=message.replace("(", r"\(")):
        normalize(RunRequest.model_validate(body), "task", spec)


def make_job(key: str = "{}", stream: bool = False) -> Job:
    loop = asyncio.new_event_loop()
    try:
        return Job(item=None, params={}, key=key, future=loop.create_future(), enqueued_at=0.0, stream=stream)
    finally:
        loop.close()


def test_select_batch_groups_equal_params_in_order() -> None:
    jobs = [make_job("a"), make_job("b"), make_job("a"), make_job("a", stream=True), make_job("a")]
    assert select_batch(jobs, 8, batchable=True) == [0, 2, 4]
    assert select_batch(jobs, 2, batchable=True) == [0, 2]
    assert select_batch(jobs, 8, batchable=False) == [0]
    assert select_batch([make_job(stream=True), make_job()], 8, batchable=True) == [0]
    assert select_batch([], 8, batchable=True) == []


def test_batch_target_waits_only_under_load() -> None:
    assert batch_target(ready=1, preparing=0, last_batch_size=1, max_size=32) == 1
    assert batch_target(ready=1, preparing=3, last_batch_size=1, max_size=32) == 4
    assert batch_target(ready=2, preparing=0, last_batch_size=20, max_size=32) == 20
    assert batch_target(ready=40, preparing=10, last_batch_size=1, max_size=32) == 32


async def test_request_queue_admits_up_to_its_limit() -> None:
    queue = RequestQueue(limit=2)
    queue.reserve()
    queue.reserve()
    with pytest.raises(QueueFull):
        queue.reserve()
    queue.unreserve()
    assert queue.waiting == 1
    job = Job(item=1, params={}, key="{}", future=asyncio.get_running_loop().create_future(), enqueued_at=0.0)
    queue.put(job)
    assert (queue.ready, queue.preparing) == (1, 0)
    assert queue.take(4, batchable=True) == [job]
    assert queue.waiting == 0


def test_device_and_dtype_choice() -> None:
    assert resolve_device("auto", cuda_available=True) == "cuda"
    assert resolve_device("auto", cuda_available=False) == "cpu"
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        resolve_device("cuda:0", cuda_available=False)
    assert resolve_dtype("auto", "cuda", bf16_supported=True) == "bfloat16"
    assert resolve_dtype("auto", "cuda", bf16_supported=False) == "float16"
    assert resolve_dtype("auto", "cpu", bf16_supported=True) == "float32"
    assert resolve_dtype("float16", "cpu", bf16_supported=False) == "float16"


def test_engine_choice() -> None:
    assert choose_engine("auto", vllm_present=True, device="cuda") == "vllm"
    assert choose_engine("auto", vllm_present=True, device="cpu") == "transformers"
    assert choose_engine("auto", vllm_present=False, device="cuda") == "transformers"
    assert choose_engine("transformers", vllm_present=True, device="cuda") == "transformers"
    with pytest.raises(RuntimeError, match="not installed"):
        choose_engine("vllm", vllm_present=False, device="cuda")
    with pytest.raises(RuntimeError, match="CUDA"):
        choose_engine("vllm", vllm_present=True, device="cpu")


def test_vllm_param_mapping() -> None:
    assert to_sampling_params({"max_new_tokens": 5, "min_new_tokens": 2, "do_sample": False}) == {
        "max_tokens": 5,
        "min_tokens": 2,
        "temperature": 0.0,
    }
    assert to_sampling_params({})["max_tokens"] == 256
    with pytest.raises(InputError, match="num_beams"):
        to_sampling_params({"num_beams": 4})


def test_generation_aliases() -> None:
    assert rename_aliases({"max_tokens": 4, "temperature": 1}) == {"max_new_tokens": 4, "temperature": 1}
    with pytest.raises(InputError, match="mean the same"):
        rename_aliases({"max_tokens": 4, "max_new_tokens": 5})


def test_decode_base64() -> None:
    assert decode_base64("data:image/png;base64," + base64.b64encode(b"abc").decode(), 100) == b"abc"
    with pytest.raises(InputError):
        decode_base64("not*base64", 100)
    with pytest.raises(PayloadTooLarge):
        decode_base64(base64.b64encode(b"x" * 300).decode(), 100)


def test_resample_keeps_duration() -> None:
    import numpy as np

    samples = np.ones(8000, dtype=np.float32)
    assert resample(samples, 8000, 16000).shape == (16000,)
    assert resample(samples, 8000, 8000) is samples


def test_best_span_stays_in_context_and_respects_length() -> None:
    # tokens: 0 [CLS], 1-2 question, 3 [SEP], 4-7 context "aa bb cc dd"
    context = "aa bb cc dd"
    offsets = [[0, 0], [0, 1], [2, 3], [0, 0], [0, 2], [3, 5], [6, 8], [9, 11]]
    start = [9.0, 9.0, 0, 0, 0, 5.0, 0, 0]  # the question tokens score high but are not context
    end = [9.0, 0, 9.0, 0, 0, 0, 5.0, 0]
    span = best_span(start, end, [4, 5, 6, 7], offsets, context, max_answer_len=3)
    assert span["answer"] == "bb cc"
    assert (span["start"], span["end"]) == (3, 8)
    short = best_span(start, end, [4, 5, 6, 7], offsets, context, max_answer_len=1)
    assert len(short["answer"].split()) == 1


def test_model_images_table_matches_the_registry() -> None:
    from pathlib import Path

    readme = Path(__file__).resolve().parents[2] / "model-images" / "README.md"
    prefix = "`ghcr.io/modelcluster/runtime-"
    rows = {}
    for line in readme.read_text().splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if len(cells) == 3 and cells[1].startswith(prefix):
            rows[cells[0]] = cells[1].strip("`").removeprefix(prefix.strip("`"))
    assert rows == {task: entry.family for task, entry in TASKS.items()}
    assert (readme.parent / "Dockerfile").is_file()
    for family in set(rows.values()):
        assert (readme.parent / "requirements" / f"{family}.txt").is_file()


def test_operator_catalog_sends_each_task_to_its_runtime_image() -> None:
    from modelcluster.catalog import load_catalog

    catalog = load_catalog()
    images = {task: family.image for family in catalog.families.values() for task in family.tasks}
    assert images == {task: f"ghcr.io/modelcluster/runtime-{entry.family}:0.1.0" for task, entry in TASKS.items()}
