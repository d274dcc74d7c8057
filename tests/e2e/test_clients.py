"""The official clients, unchanged, against the gateway and real model pods: the Bytez Python SDK and OpenAI's.

The catalog's ``sentence-transformers/all-MiniLM-L6-v2`` (384-dimensional embeddings) and ``modelcluster/tiny-chat``
(a random-weight chat model: its text is arbitrary but never empty) run in process-backed pods of the local cluster.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from typing import Any

import httpx
import openai
import pytest
from bytez import Bytez  # type: ignore[import-untyped]
from kubernetes.client.exceptions import ApiException

from support import Cluster, GatewayProcess, Tenant, eventually, new_tenant
from support.sdk import bytez_sdk

pytestmark = pytest.mark.cluster

EMBEDDER = "sentence-transformers/all-MiniLM-L6-v2"
CHAT = "modelcluster/tiny-chat"
UNKNOWN = "nobody/nothing"
# Creating a cluster starts the runtime process of its pod, which loads torch and the model (20-40 s here).
STARTUP_TIMEOUT_S = 180
MAX_TOKENS = 8


def _is_running(gateway: GatewayProcess, tenant: Tenant, model_id: str) -> bool:
    answer = httpx.get(f"{gateway.url}/models/v2/{model_id}", headers=tenant.headers, timeout=10)
    assert answer.status_code == 200, answer.text
    cluster = answer.json()["output"]
    assert cluster["status"] != "failed", cluster
    return bool(cluster["status"] == "running" and cluster["readyReplicas"] >= 1)


@pytest.fixture(scope="module")
def served(cluster: Cluster, gateway: GatewayProcess) -> Iterator[Tenant]:
    """One tenant for the module, whose two model clusters are created (through the gateway) and ready.

    A client's first request would be held by the gateway until the pod is ready; starting both pods up front keeps
    every test's time its own, and the module's tests share the pods.
    """
    made = new_tenant(cluster, gateway)
    try:
        for model_id in (EMBEDDER, CHAT):
            created = httpx.put(f"{gateway.url}/models/v2/{model_id}", headers=made.headers, timeout=30)
            assert created.status_code == 201, created.text
        for model_id in (EMBEDDER, CHAT):
            eventually(
                partial(_is_running, gateway, made, model_id),
                timeout=STARTUP_TIMEOUT_S,
                interval=1.0,
                what=f"the cluster of {model_id} to run",
            )
        yield made
    finally:
        try:
            cluster.core.delete_namespace(made.namespace)
        except ApiException as error:
            if error.status != 404:
                raise


def openai_client(gateway: GatewayProcess, key: str) -> openai.OpenAI:
    return openai.OpenAI(
        api_key=key, base_url=f"{gateway.url}/models/v2/openai/v1", max_retries=0, timeout=STARTUP_TIMEOUT_S
    )


@pytest.fixture
def sdk(gateway: GatewayProcess, served: Tenant) -> Bytez:
    return bytez_sdk(gateway.url, served.key)


@pytest.fixture
def client(gateway: GatewayProcess, served: Tenant) -> Iterator[openai.OpenAI]:
    with openai_client(gateway, served.key) as made:
        yield made


# --- the Bytez SDK -----------------------------------------------------------------------------------------------


def test_sdk_lists_the_tasks(sdk: Bytez) -> None:
    result = sdk.list.tasks()
    assert result.error is None
    assert {"chat", "feature-extraction", "sentence-similarity", "text-generation"} <= set(result.output)


def test_sdk_lists_the_models_with_their_tasks_and_filters_them_by_task(sdk: Bytez) -> None:
    everything = sdk.list.models()
    assert everything.error is None
    tasks = {item["modelId"]: item["task"] for item in everything.output}
    assert tasks[EMBEDDER] == "sentence-similarity"
    assert tasks[CHAT] == "chat"

    chat = sdk.list.models({"task": "chat"})
    assert chat.error is None
    assert CHAT in {item["modelId"] for item in chat.output}
    assert {item["task"] for item in chat.output} == {"chat"}

    one = sdk.list.models({"modelId": EMBEDDER})
    assert one.error is None
    assert [item["modelId"] for item in one.output] == [EMBEDDER]


def test_sdk_runs_the_embedding_model(sdk: Bytez) -> None:
    result = sdk.model(EMBEDDER).run("a cat")
    assert result.error is None
    vector = result.output
    assert isinstance(vector, list)
    assert len(vector) == 384
    assert all(isinstance(value, float) for value in vector)


def test_sdk_runs_the_chat_model(sdk: Bytez) -> None:
    result = sdk.model(CHAT).run([{"role": "user", "content": "hi"}], {"max_new_tokens": MAX_TOKENS})
    assert result.error is None
    assert set(result.output) == {"role", "content"}
    assert result.output["role"] == "assistant"
    assert isinstance(result.output["content"], str)
    assert result.output["content"].strip()


def test_sdk_streams_the_chat_model(sdk: Bytez) -> None:
    model = sdk.model(CHAT)
    lines = list(model.run("hi", {"max_new_tokens": MAX_TOKENS}, stream=True))
    assert lines, "the stream carried no text"
    assert all(isinstance(line, str) for line in lines)
    assert not any(line.startswith(("[error]", '{"error"')) for line in lines), lines
    streamed = "".join(lines)
    assert streamed.strip()
    # The model decodes greedily: the whole answer to the same request is the streamed text (the SDK drops newlines).
    whole = model.run("hi", {"max_new_tokens": MAX_TOKENS})
    assert whole.error is None
    assert streamed == "".join(whole.output["content"].splitlines())


def test_sdk_reports_an_input_the_task_does_not_take(sdk: Bytez) -> None:
    result = sdk.model(CHAT).run({"bad": 1})
    assert result.output is None
    assert isinstance(result.error, str)
    assert "bad" in result.error


def test_sdk_reports_a_wrong_key(gateway: GatewayProcess) -> None:
    sdk = bytez_sdk(gateway.url, "not-a-key")
    listed = sdk.list.tasks()
    assert listed.error == "Unauthorized"
    assert listed.output is None
    ran = sdk.model(EMBEDDER).run("a cat")
    assert ran.error == "Unauthorized"
    assert ran.output is None


# --- the OpenAI client -------------------------------------------------------------------------------------------

HELLO: list[Any] = [{"role": "user", "content": "hi"}]


def test_openai_chat_completion(client: openai.OpenAI) -> None:
    answer = client.chat.completions.create(model=CHAT, messages=HELLO, max_tokens=MAX_TOKENS)
    assert answer.object == "chat.completion"
    assert answer.model == CHAT
    [choice] = answer.choices
    assert choice.message.role == "assistant"
    assert isinstance(choice.message.content, str)
    assert choice.message.content.strip()
    assert choice.finish_reason in ("stop", "length")
    assert answer.usage is not None
    assert 1 <= answer.usage.completion_tokens <= MAX_TOKENS
    assert answer.usage.prompt_tokens >= 1
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + answer.usage.completion_tokens


def test_openai_chat_completion_streams(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model=CHAT, messages=HELLO, max_tokens=MAX_TOKENS, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert all(chunk.object == "chat.completion.chunk" for chunk in chunks)
    *with_choices, last = chunks
    assert with_choices and all(len(chunk.choices) == 1 for chunk in with_choices)
    assert with_choices[0].choices[0].delta.role == "assistant"
    texts = [chunk.choices[0].delta.content for chunk in with_choices if chunk.choices[0].delta.content]
    assert texts, "no chunk carried text"
    assert "".join(texts).strip()
    assert with_choices[-1].choices[0].finish_reason in ("stop", "length")
    assert [chunk.choices[0].finish_reason for chunk in with_choices[:-1]] == [None] * (len(with_choices) - 1)
    # With include_usage, the last chunk has no choices and the token counts.
    assert last.choices == []
    assert last.usage is not None
    assert 1 <= last.usage.completion_tokens <= MAX_TOKENS


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_openai_completions_against_a_chat_model_is_a_bad_request(client: openai.OpenAI, stream: bool) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        client.completions.create(model=CHAT, prompt="hi", max_tokens=MAX_TOKENS, stream=stream)
    assert raised.value.status_code == 400
    assert raised.value.param == "model"
    assert f"{CHAT} serves chat" in raised.value.message
    assert "completions" in raised.value.message


def test_openai_lists_the_chat_model(client: openai.OpenAI) -> None:
    models = {model.id: model for model in client.models.list()}
    assert models[CHAT].object == "model"
    assert models[CHAT].owned_by == "modelcluster"


def test_openai_model_list_leaves_out_models_its_routes_cannot_run(client: openai.OpenAI) -> None:
    """The tenant has a cluster of the embedding model, which neither chat/completions nor completions runs."""
    models = {model.id for model in client.models.list()}
    assert CHAT in models
    assert EMBEDDER not in models


def test_openai_wrong_key_is_an_authentication_error(gateway: GatewayProcess) -> None:
    with openai_client(gateway, "not-a-key") as stranger, pytest.raises(openai.AuthenticationError) as raised:
        stranger.chat.completions.create(model=CHAT, messages=HELLO, max_tokens=MAX_TOKENS)
    assert raised.value.status_code == 401
    assert raised.value.code == "invalid_api_key"


def test_openai_unknown_field_is_a_bad_request(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(
            model=CHAT, messages=HELLO, max_tokens=MAX_TOKENS, extra_body={"no_such_field": 1}
        )
    assert raised.value.param == "no_such_field"
    assert "unrecognized field" in raised.value.message


def test_openai_unknown_model_is_not_found(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as raised:
        client.chat.completions.create(model=UNKNOWN, messages=HELLO, max_tokens=MAX_TOKENS)
    assert raised.value.status_code == 404
    assert UNKNOWN in raised.value.message
