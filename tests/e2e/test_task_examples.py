"""The API's per-task examples through the gateway and the ``bytez`` SDK, answered by the tiny offline models.

The system runs as ``modelcluster dev`` runs it (the local control plane with its process-backed pods, the operator
and the gateway as processes, ``modelcluster.devcluster.system``); each ``modelcluster/tiny-<task>`` model
(``modelcluster.devcluster.tiny_tasks``) is served by its family's real runtime process. The inputs are the examples
of the Bytez docs; media the docs fetch from a URL are sent as base64 (nothing off this machine is reachable), and
``max_length`` becomes ``max_new_tokens`` (the runtime refuses ``max_length``, see docs/runtime.md). Each answer is
checked for its task's shape: the weights are random, so the content is arbitrary.

Every runtime process imports torch (up to 1 GB each), so the tasks run a few at a time: their clusters are
created together, answer, and are deleted (their pods and processes gone) before the next few start.
"""

from __future__ import annotations

import base64
import io
import math
import struct
import wave
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import httpx
import pytest

from modelcluster.devcluster import tiny_builders, tiny_tasks
from modelcluster.devcluster.tiny_models import MODEL_ID as TINY_CHAT
from modelcluster.devcluster.versions import cache_root

from support import Cluster, GatewayProcess, Tenant, drop_namespace, eventually, new_tenant
from support.sdk import bytez_sdk

pytestmark = pytest.mark.cluster

#: Runtime processes started at once.
AT_ONCE = 4
STARTUP_TIMEOUT_S = 240
GONE_TIMEOUT_S = 90


def png() -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 120, 40)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def wav(seconds: float = 1.0, rate: int = 16000) -> str:
    """A 440 Hz tone as a mono 16-bit WAV, base64."""
    frames = b"".join(
        struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / rate))) for i in range(int(seconds * rate))
    )
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(frames)
    return base64.b64encode(buffer.getvalue()).decode()


def is_labels(output: Any, labels: set[str] | None = None) -> None:
    assert isinstance(output, list) and output, output
    for item in output:
        assert isinstance(item["label"], str) and 0.0 <= item["score"] <= 1.0, item
        if labels is not None:
            assert item["label"] in labels, item


def is_text(output: Any) -> None:
    assert isinstance(output, str) and output.strip(), output


def is_vector(output: Any, size: int) -> None:
    assert isinstance(output, list) and len(output) == size, output
    assert all(isinstance(value, float) for value in output)


def is_media(output: Any, magic: bytes) -> None:
    assert isinstance(output, str), output
    assert base64.b64decode(output).startswith(magic)


def is_generated(prompt: str, output: Any) -> None:
    is_text(output)
    assert output.startswith(prompt) and len(output) > len(prompt), output


def is_assistant(output: Any) -> None:
    assert set(output) == {"role", "content"} and output["role"] == "assistant", output
    is_text(output["content"])


def is_entities(output: Any) -> None:
    assert isinstance(output, list) and output, output
    for item in output:
        assert {"entity", "score", "index", "word", "start", "end"} <= set(item), item
        assert item["entity"] in {"B-PER", "I-PER"}, item


def is_fill(output: Any) -> None:
    assert isinstance(output, list) and output, output
    for item in output:
        assert {"score", "token", "token_str", "sequence"} <= set(item), item


def is_answer(context: str, output: Any) -> None:
    assert {"score", "start", "end", "answer"} <= set(output), output
    assert context[output["start"] : output["end"]] == output["answer"], output


def is_zero_shot(labels: list[str], output: Any) -> None:
    assert sorted(output["labels"]) == sorted(labels), output
    assert len(output["scores"]) == len(labels) and math.isclose(sum(output["scores"]), 1.0, rel_tol=1e-3), output


def is_transcript(output: Any) -> None:
    assert output == tiny_builders.CTC_TRANSCRIPT, output


def is_detections(output: Any) -> None:
    assert isinstance(output, list) and output, output
    for item in output:
        assert item["label"] in {"cat", "dog"} and set(item["box"]) == {"xmin", "ymin", "xmax", "ymax"}, item


@dataclass(frozen=True)
class Example:
    """One task's example: what the SDK sends and how its answer must look."""

    task: str
    input: Any
    check: Callable[[Any], None]
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def model_id(self) -> str:
        return tiny_tasks.by_task()[self.task]


QA_CONTEXT = "My name is Holly and I live in NYC"
ZERO_SHOT_LABELS = ["travel", "cooking", "dancing"]
CHAT = [
    {"role": "system", "content": "You are a friendly chatbot"},
    {"role": "user", "content": "What is the capital of England?"},
]

EXAMPLES = (
    Example("text-generation", "Once upon a time", partial(is_generated, "Once upon a time")),
    Example("chat", CHAT, is_assistant, {"max_new_tokens": 100}),
    Example("summarization", "Your long text goes here...", is_text, {"max_new_tokens": 40}),
    Example("translation", "Hello, how are you? Beautiful day today, isn't it?", is_text),
    Example("fill-mask", "The capital of France is <mask>.", is_fill),
    Example("text-classification", "Your text for classification goes here...", partial(is_labels, labels=None)),
    Example("token-classification", "John Doe is a software engineer at Google.", is_entities),
    Example(
        "question-answering",
        {"question": "Where does Holly live?", "context": QA_CONTEXT},
        partial(is_answer, QA_CONTEXT),
    ),
    Example(
        "zero-shot-classification",
        {"text": "One day I will see the world", "candidate_labels": ZERO_SHOT_LABELS},
        partial(is_zero_shot, ZERO_SHOT_LABELS),
    ),
    Example("feature-extraction", "Your text for feature extraction goes here...", partial(is_vector, size=32)),
    Example("image-classification", png(), partial(is_labels, labels={"cat", "dog", "bird"})),
    # Random weights are never confident: every box is shown (the docs' example uses the default threshold).
    Example("object-detection", png(), is_detections, {"threshold": 0.0}),
    Example("image-to-text", png(), is_text),
    Example("automatic-speech-recognition", wav(), is_transcript),
    Example("text-to-speech", "Hello, how are you today?", partial(is_media, magic=b"RIFF")),
    Example(
        "text-to-image",
        "A beautiful landscape with mountains and a river",
        partial(is_media, magic=b"\x89PNG"),
        {"num_inference_steps": 2},
    ),
)
BATCHES = [EXAMPLES[start : start + AT_ONCE] for start in range(0, len(EXAMPLES), AT_ONCE)]


def test_every_listed_task_has_its_tiny_model_in_the_catalog() -> None:
    from modelcluster.catalog import load_catalog, resolve

    catalog = load_catalog()
    for example in EXAMPLES:
        assert resolve(catalog, example.model_id, None).task == example.task
    assert tiny_tasks.by_task()["chat"] == TINY_CHAT


@pytest.fixture(scope="module")
def tenant(cluster: Cluster, gateway: GatewayProcess) -> Iterator[Tenant]:
    # `cluster up` places the tiny models; a cluster started before they existed gets them now (a no-op otherwise).
    assert tiny_tasks.seed_tiny_models(cache_root() / "hf-home")
    made = new_tenant(cluster, gateway)
    try:
        yield made
    finally:
        drop_namespace(cluster.core, made.namespace)


def _running(gateway: GatewayProcess, tenant: Tenant, model_id: str) -> bool:
    answer = httpx.get(f"{gateway.url}/models/v2/{model_id}", headers=tenant.headers, timeout=10)
    assert answer.status_code == 200, answer.text
    cluster = answer.json()["output"]
    assert cluster["status"] != "failed", cluster
    return bool(cluster["status"] == "running" and cluster["readyReplicas"] >= 1)


def _no_pods(cluster: Cluster, namespace: str) -> bool:
    return not cluster.core.list_namespaced_pod(namespace).items


@pytest.mark.parametrize("batch", BATCHES, ids=lambda batch: "+".join(example.task for example in batch))
def test_the_examples_answer_through_the_sdk(
    cluster: Cluster, gateway: GatewayProcess, tenant: Tenant, batch: tuple[Example, ...]
) -> None:
    capacity = {"capacity": {"min": 0, "desired": 1, "max": 1}}
    for example in batch:
        created = httpx.put(
            f"{gateway.url}/models/v2/{example.model_id}", headers=tenant.headers, json=capacity, timeout=30
        )
        assert created.status_code == 201, created.text
    try:
        for example in batch:
            eventually(
                partial(_running, gateway, tenant, example.model_id),
                timeout=STARTUP_TIMEOUT_S,
                interval=1.0,
                what=f"the cluster of {example.model_id} to run",
            )
        sdk = bytez_sdk(gateway.url, tenant.key)
        failures: dict[str, str] = {}
        for example in batch:
            result = sdk.model(example.model_id).run(example.input, example.params)
            try:
                assert result.error is None, result.error
                example.check(result.output)
            except AssertionError as failure:
                failures[example.task] = str(failure)
        assert not failures, failures
    finally:
        for example in batch:
            httpx.delete(f"{gateway.url}/models/v2/{example.model_id}", headers=tenant.headers, timeout=30)
        eventually(
            partial(_no_pods, cluster, tenant.namespace),
            timeout=GONE_TIMEOUT_S,
            what=f"the pods of {', '.join(example.model_id for example in batch)} to go",
        )
