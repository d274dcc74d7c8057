"""The OpenAI protocol: request models and their errors, OpenAI's error body, the model list."""

from __future__ import annotations

from typing import Any

import pytest

from modelcluster.api.errors import ApiError
from modelcluster.gateway.openai.protocol import (
    DEFAULT_MAX_TOKENS,
    ChatCompletionRequest,
    CompletionRequest,
    models_list,
    openai_error,
    openai_error_body,
    parse_request,
)

from openai_bodies import USER_HI, chat, prompt, raw

# --- requests ----------------------------------------------------------------------------------------------------


def test_stop_is_a_list() -> None:
    assert parse_request(ChatCompletionRequest, raw(chat(stop=["a", "bc"]))).stop == ["a", "bc"]
    assert parse_request(CompletionRequest, raw(prompt(stop="x"))).stop == ["x"]


def test_request_properties() -> None:
    streamed = parse_request(ChatCompletionRequest, raw(chat(stream=True, stream_options={"include_usage": True})))
    assert streamed.include_usage
    assert not parse_request(ChatCompletionRequest, raw(chat(stream=True, stream_options={}))).include_usage
    assert not parse_request(ChatCompletionRequest, raw(chat(stream=True))).include_usage
    assert parse_request(ChatCompletionRequest, raw(chat(max_completion_tokens=9))).max_new_tokens == 9
    assert parse_request(CompletionRequest, raw(prompt(max_tokens=4))).max_new_tokens == 4
    assert parse_request(CompletionRequest, raw(prompt())).max_new_tokens == DEFAULT_MAX_TOKENS


@pytest.mark.parametrize(
    ("kind", "body", "param", "message"),
    [
        (ChatCompletionRequest, chat(tools=[]), "tools", "tools: unrecognized field"),
        (ChatCompletionRequest, chat(n=2), "n", "n: only n=1 is supported, got 2"),
        (ChatCompletionRequest, chat(n=0), "n", "only n=1"),
        (ChatCompletionRequest, chat(messages=[]), "messages", "messages: List should have at least 1 item"),
        (ChatCompletionRequest, {"model": "m"}, "messages", "messages: Field required"),
        (ChatCompletionRequest, chat(model=None), "model", "model: Field required"),
        (ChatCompletionRequest, chat(model=""), "model", "model: String should have at least 1 character"),
        (ChatCompletionRequest, chat(model=3), "model", "model: Input should be a valid string"),
        (
            ChatCompletionRequest,
            chat(messages=[{"content": "x"}]),
            "messages.0.role",
            "messages.0.role: Field required",
        ),
        (ChatCompletionRequest, chat(messages=[{"role": "tool", "content": "x"}]), "messages.0.role", "'assistant'"),
        (ChatCompletionRequest, chat(messages=[{"role": "user"}]), "messages.0.content", "Field required"),
        (ChatCompletionRequest, chat(messages=[{"role": "user", "content": None}]), "messages.0.content", "required"),
        (
            ChatCompletionRequest,
            chat(messages=[{"role": "user", "content": 5}]),
            "messages.0.content",
            "messages.0.content: content must be a string or a list of text parts",
        ),
        (
            ChatCompletionRequest,
            chat(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "u"}}]}]),
            "messages.0.content.0",
            "only text content parts are supported, not 'image_url'",
        ),
        (
            ChatCompletionRequest,
            chat(messages=[{"role": "user", "content": ["x"]}]),
            "messages.0.content.0",
            "a content part must be an object",
        ),
        (
            ChatCompletionRequest,
            chat(messages=[{"role": "user", "content": [{"type": "text"}]}]),
            "messages.0.content.0.text",
            "Field required",
        ),
        (
            ChatCompletionRequest,
            chat(messages=[{"role": "user", "content": "x", "tool_call_id": "t"}]),
            "messages.0.tool_call_id",
            "unrecognized field",
        ),
        (ChatCompletionRequest, chat(messages="hi"), "messages", "Input should be a valid list"),
        (ChatCompletionRequest, chat(temperature="1"), "temperature", "Input should be a valid number"),
        (ChatCompletionRequest, chat(temperature=2.5), "temperature", "less than or equal to 2"),
        (ChatCompletionRequest, chat(temperature=-1), "temperature", "greater than or equal to 0"),
        (ChatCompletionRequest, chat(top_p=1.5), "top_p", "less than or equal to 1"),
        (ChatCompletionRequest, chat(max_tokens=0), "max_tokens", "greater than or equal to 1"),
        (ChatCompletionRequest, chat(max_tokens=1.0), "max_tokens", "valid integer"),
        (ChatCompletionRequest, chat(max_tokens=True), "max_tokens", "valid integer"),
        (ChatCompletionRequest, chat(max_tokens=5, max_completion_tokens=6), "max_completion_tokens", "send one"),
        (ChatCompletionRequest, chat(stream="yes"), "stream", "valid boolean"),
        (ChatCompletionRequest, chat(stream_options={"include_usage": True}), "stream_options", "only allowed when"),
        (ChatCompletionRequest, chat(stream=True, stream_options={"x": 1}), "stream_options.x", "unrecognized field"),
        (ChatCompletionRequest, chat(stop=5), "stop", "stop: must be a string or a list of strings"),
        (ChatCompletionRequest, chat(stop=["a", "b", "c", "d", "e"]), "stop", "at most 4 items"),
        (ChatCompletionRequest, chat(stop=[""]), "stop.0", "at least 1 character"),
        (ChatCompletionRequest, chat(presence_penalty=0.5), "presence_penalty", "presence_penalty: not supported"),
        (ChatCompletionRequest, chat(frequency_penalty=-1), "frequency_penalty", "not supported"),
        (ChatCompletionRequest, chat(seed="1"), "seed", "valid integer"),
        (CompletionRequest, prompt(echo=True), "echo", "echo: not supported"),
        (CompletionRequest, prompt(n=3), "n", "only n=1"),
        (CompletionRequest, prompt(prompt=["a", "b"]), "prompt", "exactly one prompt per request, got 2"),
        (CompletionRequest, prompt(prompt=[]), "prompt", "exactly one prompt per request, got 0"),
        (CompletionRequest, prompt(prompt=[1, 2]), "prompt", "token-id prompts are not supported"),
        (CompletionRequest, prompt(prompt=""), "prompt", "at least 1 character"),
        (CompletionRequest, prompt(prompt=None), "prompt", "prompt: Field required"),
        (CompletionRequest, prompt(suffix="x"), "suffix", "unrecognized field"),
        (CompletionRequest, prompt(messages=USER_HI), "messages", "unrecognized field"),
        (CompletionRequest, prompt(best_of=2), "best_of", "unrecognized field"),
    ],
)
def test_invalid_requests_name_the_field(kind: Any, body: dict[str, Any], param: str, message: str) -> None:
    with pytest.raises(ApiError) as caught:
        parse_request(kind, raw(body))
    error = caught.value
    assert error.status == 400
    assert error.param == param
    assert message in error.message
    assert openai_error_body(error) == {
        "error": {"message": error.message, "type": "invalid_request_error", "param": param, "code": None}
    }


def test_several_problems_are_listed_and_capped() -> None:
    body = {f"x{i}": i for i in range(7)}
    with pytest.raises(ApiError) as caught:
        parse_request(CompletionRequest, raw(body))
    parts = caught.value.message.split("; ")
    assert parts[0] == "model: Field required"
    assert len(parts) == 6
    assert parts[-1].startswith("and ") and parts[-1].endswith(" more")


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"{not json", "the body is not valid JSON"),
        (b"\xff\xfe", "the body is not valid JSON"),
        (b"[1, 2]", "the body must be a JSON object"),
        (b"null", "the body must be a JSON object"),
    ],
)
def test_bodies_that_are_not_objects(payload: bytes, message: str) -> None:
    with pytest.raises(ApiError) as caught:
        parse_request(ChatCompletionRequest, payload)
    assert caught.value.status == 400
    assert caught.value.param is None
    assert message in caught.value.message


# --- errors ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "type_", "code"),
    [
        (400, "invalid_request_error", None),
        (401, "authentication_error", "invalid_api_key"),
        (403, "permission_error", None),
        (404, "not_found_error", "model_not_found"),
        (409, "conflict_error", None),
        (413, "invalid_request_error", "request_too_large"),
        (422, "invalid_request_error", None),
        (429, "rate_limit_error", "rate_limit_exceeded"),
        (418, "invalid_request_error", None),
        (500, "server_error", None),
        (503, "server_error", None),
    ],
)
def test_openai_error_defaults_by_status(status: int, type_: str, code: str | None) -> None:
    assert openai_error(status, "boom") == {"error": {"message": "boom", "type": type_, "param": None, "code": code}}


def test_openai_error_overrides() -> None:
    body = openai_error(404, "no route", type_="invalid_request_error", code="unknown_url", param="path")
    assert body == {
        "error": {"message": "no route", "type": "invalid_request_error", "param": "path", "code": "unknown_url"}
    }


# --- models ------------------------------------------------------------------------------------------------------


def test_models_list() -> None:
    assert models_list([("openai-community/gpt2", 10), ("local-model", 20)]) == {
        "object": "list",
        "data": [
            {"id": "openai-community/gpt2", "object": "model", "created": 10, "owned_by": "openai-community"},
            {"id": "local-model", "object": "model", "created": 20, "owned_by": "modelcluster"},
        ],
    }
    assert models_list([]) == {"object": "list", "data": []}
