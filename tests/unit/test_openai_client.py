"""The official ``openai`` client over the bodies the OpenAI routes answer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx2
import openai
import pytest

from modelcluster.api.errors import ApiError
from modelcluster.api.streaming import StreamParser
from modelcluster.gateway.openai.protocol import models_list, openai_error, openai_error_body
from modelcluster.gateway.openai.serving import OpenAIServing
from modelcluster.gateway.openai.serving_chat import CHAT
from modelcluster.gateway.openai.serving_completion import COMPLETION
from modelcluster.gateway.openai.streaming import SSE_DONE
from modelcluster.gateway.openai.translate import usage_from_headers

from openai_bodies import CREATED, runtime_sse

Handler = Callable[[httpx2.Request], httpx2.Response]


def openai_client(handler: Handler) -> openai.OpenAI:
    return openai.OpenAI(
        api_key="test-key",
        base_url="http://gateway.test/models/v2/openai/v1",
        http_client=httpx2.Client(transport=httpx2.MockTransport(handler)),
        max_retries=0,
    )


def fake_gateway(runtime_stream: bytes) -> Handler:
    """Answers the OpenAI routes with this module's bodies; streams translate ``runtime_stream``."""

    def handle(request: httpx2.Request) -> httpx2.Response:
        assert request.headers["authorization"] == "Bearer test-key"
        path = request.url.path.removeprefix("/models/v2/openai/v1")
        if path == "/models":
            return httpx2.Response(200, json=models_list([("org/chat-model", CREATED)]))
        serving: OpenAIServing[Any] = CHAT if path == "/chat/completions" else COMPLETION
        try:
            parsed = serving.parse(request.content)
        except ApiError as error:
            return httpx2.Response(error.openai_status, json=openai_error_body(error))
        if parsed.stream:
            translator = serving.translator(parsed, "req1", CREATED)
            parser = StreamParser()
            out = translator.start()
            for event in parser.feed(runtime_stream) + parser.close():
                out += translator.feed(event)
            out += translator.close()
            return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=out)
        usage = usage_from_headers({"X-Prompt-Tokens": "5", "X-Completion-Tokens": "2"})
        output: object = {"role": "assistant", "content": "Hello!"} if serving is CHAT else " upon a time"
        body = serving.response(parsed.model, output, usage, CREATED, "req1", max_tokens=parsed.max_new_tokens)
        return httpx2.Response(200, json=body)

    return handle


RUNTIME_STREAM = (
    runtime_sse({"error": None, "output": "Hel"})
    + runtime_sse({"error": None, "output": "lo!"})
    + runtime_sse({"error": None, "output": "", "usage": {"prompt_tokens": 5, "completion_tokens": 2}})
    + SSE_DONE
)


def test_openai_client_chat_completion() -> None:
    client = openai_client(fake_gateway(RUNTIME_STREAM))
    answer = client.chat.completions.create(model="org/chat-model", messages=[{"role": "user", "content": "hi"}])
    assert answer.id == "chatcmpl-req1"
    assert answer.choices[0].message.role == "assistant"
    assert answer.choices[0].message.content == "Hello!"
    assert answer.choices[0].finish_reason == "stop"
    assert answer.usage is not None
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens, answer.usage.total_tokens) == (5, 2, 7)


def test_openai_client_chat_stream() -> None:
    client = openai_client(fake_gateway(RUNTIME_STREAM))
    stream = client.chat.completions.create(
        model="org/chat-model",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert text == "Hello!"
    assert [chunk.choices[0].finish_reason for chunk in chunks if chunk.choices][-1] == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == 7


def test_openai_client_stream_error() -> None:
    failing = runtime_sse({"error": None, "output": "Hel"}) + runtime_sse({"error": "inference failed", "output": None})
    client = openai_client(fake_gateway(failing))
    stream = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}], stream=True)
    with pytest.raises(openai.APIError, match="inference failed"):
        list(stream)


def test_openai_client_completions() -> None:
    client = openai_client(fake_gateway(RUNTIME_STREAM))
    answer = client.completions.create(model="org/text-model", prompt="Once")
    assert answer.id == "cmpl-req1"
    assert answer.choices[0].text == " upon a time"
    assert answer.usage is not None
    assert answer.usage.total_tokens == 7
    stream = client.completions.create(model="org/text-model", prompt="Once", stream=True)
    assert "".join(chunk.choices[0].text for chunk in stream) == "Hello!"


def test_openai_client_models() -> None:
    models = list(openai_client(fake_gateway(RUNTIME_STREAM)).models.list())
    assert [(model.id, model.created, model.owned_by) for model in models] == [("org/chat-model", CREATED, "org")]


@pytest.mark.parametrize(
    ("status", "exception", "code"),
    [
        (400, openai.BadRequestError, None),
        (401, openai.AuthenticationError, "invalid_api_key"),
        (404, openai.NotFoundError, "model_not_found"),
        (409, openai.ConflictError, None),
        (422, openai.UnprocessableEntityError, None),
        (429, openai.RateLimitError, "rate_limit_exceeded"),
        (503, openai.InternalServerError, None),
    ],
)
def test_openai_client_raises_for_error_bodies(
    status: int, exception: type[openai.APIStatusError], code: str | None
) -> None:
    def handle(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(status, json=openai_error(status, "nope", param="model"))

    with pytest.raises(exception) as caught:
        openai_client(handle).chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.status_code == status
    assert caught.value.code == code
    assert caught.value.param == "model"
    assert caught.value.body == openai_error(status, "nope", param="model")["error"]


def test_openai_client_sees_validation_errors() -> None:
    client = openai_client(fake_gateway(RUNTIME_STREAM))
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}], n=2)
    assert caught.value.param == "n"
    assert caught.value.type == "invalid_request_error"
    with pytest.raises(openai.BadRequestError) as unknown:
        client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}], extra_body={"tool_choice": "auto"}
        )
    assert unknown.value.param == "tool_choice"
