"""Text families over real HTTP against tiny models and the real all-MiniLM-L6-v2."""

from __future__ import annotations

import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from runtime_support import ServerHandle


def run(server: ServerHandle, body: object) -> httpx.Response:
    with server.client() as client:
        return client.post("/run", json=body)


def server_tokens(model_dir: Path, text: str) -> list[str]:
    """The word pieces of ``text`` under the model's own tokenizer, without special tokens."""
    from transformers import AutoTokenizer

    tokens: list[str] = AutoTokenizer.from_pretrained(str(model_dir)).tokenize(text)
    return tokens


@pytest.fixture(scope="module")
def minilm(serve: Callable[..., ServerHandle], minilm_dir: Path) -> ServerHandle:
    return serve(minilm_dir, "feature-extraction", max_batch_wait_ms=20)


def test_fill_mask(serve: Callable[..., ServerHandle], text_models: dict[str, Path]) -> None:
    server = serve(text_models["fill-mask"], "fill-mask")
    response = run(server, {"text": "the cat sat on the [MASK]", "params": {"top_k": 3}})
    assert response.status_code == 200, response.text
    output = response.json()["output"]
    assert len(output) == 3
    assert set(output[0]) == {"score", "token", "token_str", "sequence"}
    missing = run(server, {"text": "no mask token here"})
    assert missing.status_code == 422
    assert "[MASK]" in missing.json()["error"]


def test_text_classification_sdk_input(serve: Callable[..., ServerHandle], text_models: dict[str, Path]) -> None:
    server = serve(text_models["text-classification"], "text-classification")
    response = run(server, {"input": "a dog ran in the park", "params": {}})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["error"] is None
    [prediction] = body["output"]
    assert prediction["label"] in {"NEGATIVE", "POSITIVE"}
    assert 0.0 <= prediction["score"] <= 1.0


def test_token_classification(serve: Callable[..., ServerHandle], text_models: dict[str, Path]) -> None:
    server = serve(text_models["token-classification"], "token-classification")
    text = "John Doe is a software engineer at Google"
    response = run(server, {"text": text, "params": {"ignore_labels": []}})  # every token, "O" ones included
    assert response.status_code == 200, response.text
    output = response.json()["output"]
    tokens = server_tokens(text_models["token-classification"], text)
    assert [entity["word"] for entity in output] == tokens
    assert [entity["index"] for entity in output] == list(range(1, len(tokens) + 1))  # after [CLS]
    for entity in output:
        assert {"entity", "score", "index", "word", "start", "end"} <= set(entity)
        assert entity["entity"] in {"O", "B-PER", "I-PER"}
        assert 0.0 < entity["score"] <= 1.0
        assert text[entity["start"] : entity["end"]].lower() == entity["word"].removeprefix("##")


def test_zero_shot_classification(serve: Callable[..., ServerHandle], text_models: dict[str, Path]) -> None:
    server = serve(text_models["zero-shot-classification"], "zero-shot-classification")
    body = {"text": "the weather is nice today", "candidate_labels": ["weather", "sports", "cats"]}
    response = run(server, body)
    assert response.status_code == 200, response.text
    output = response.json()["output"]
    assert output["sequence"] == body["text"]
    assert sorted(output["labels"]) == sorted(body["candidate_labels"])
    assert math.isclose(sum(output["scores"]), 1.0, rel_tol=1e-4)
    no_labels = run(server, {"text": "hello"})
    assert no_labels.status_code == 422
    assert "candidate_labels" in no_labels.json()["error"]


def test_question_answering_span_is_inside_context(
    serve: Callable[..., ServerHandle], text_models: dict[str, Path]
) -> None:
    server = serve(text_models["question-answering"], "question-answering")
    context = "John Doe is a software engineer at Google in Paris"
    response = run(server, {"question": "where does John work", "context": context})
    assert response.status_code == 200, response.text
    output = response.json()["output"]
    assert set(output) == {"score", "start", "end", "answer"}
    assert 0 <= output["start"] <= output["end"] <= len(context)
    assert output["answer"] == context[output["start"] : output["end"]]
    assert output["answer"]
    assert 0.0 < output["score"] <= 1.0


def test_embeddings_match_sentence_transformers(minilm: ServerHandle, minilm_dir: Path) -> None:
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(minilm_dir), device="cpu").encode(["the cat sat on the mat"])[0]
    response = run(minilm, {"text": "the cat sat on the mat"})
    assert response.status_code == 200, response.text
    vector = response.json()["output"]
    assert len(vector) == 384
    assert max(abs(a - float(b)) for a, b in zip(vector, reference, strict=True)) < 1e-4
    several = run(minilm, {"input": ["one sentence", "another one"]}).json()["output"]
    assert len(several) == 2
    assert len(several[0]) == 384


def test_embeddings_batch_under_concurrency(minilm: ServerHandle) -> None:
    before_sum = minilm.metric("modelcluster_runtime_batch_size_sum")
    before_count = minilm.metric("modelcluster_runtime_batch_size_count")

    def one(index: int) -> list[float]:
        response = run(minilm, {"text": f"sentence number {index} about cats"})
        assert response.status_code == 200, response.text
        vector: list[float] = response.json()["output"]
        return vector

    with ThreadPoolExecutor(16) as pool:
        vectors = list(pool.map(one, range(48)))
    assert all(len(vector) == 384 for vector in vectors)
    served = minilm.metric("modelcluster_runtime_batch_size_sum") - before_sum
    calls = minilm.metric("modelcluster_runtime_batch_size_count") - before_count
    assert served == 48
    assert calls < 48, "concurrent requests should share model calls"
    # each answer belongs to its own input: re-ask one and compare
    again = run(minilm, {"text": "sentence number 7 about cats"}).json()["output"]
    assert max(abs(a - b) for a, b in zip(again, vectors[7], strict=True)) < 1e-4


def test_sentence_similarity_task(serve: Callable[..., ServerHandle], minilm_dir: Path) -> None:
    server = serve(minilm_dir, "sentence-similarity")
    vectors = run(
        server, {"text": ["a cat", "a kitten", "stock markets fell"], "params": {"normalize_embeddings": True}}
    )
    assert vectors.status_code == 200, vectors.text
    cat, kitten, stocks = vectors.json()["output"]

    def dot(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True))

    assert math.isclose(dot(cat, cat), 1.0, rel_tol=1e-3)
    assert dot(cat, kitten) > dot(cat, stocks)
