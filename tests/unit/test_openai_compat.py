from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx2
import openai
import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelcluster.api.errors import ApiError
from modelcluster.api.streaming import Failure, StreamParser
from modelcluster.gateway.openai_compat import (
    DEFAULT_MAX_TOKENS,
    SSE_DONE,
    ChatCompletionRequest,
    CompletionRequest,
    Delta,
    Done,
    StopTrimmer,
    StreamEvent,
    StreamTranslator,
    TokenUsage,
    apply_stop,
    chat_chunk,
    chat_completion,
    completion,
    completion_chunk,
    finish_reason,
    models_list,
    openai_error,
    openai_error_body,
    output_text,
    parse_request,
    runtime_error,
    sse,
    to_run_body,
    usage_chunk,
    usage_from_headers,
)

USER_HI = [{"role": "user", "content": "hi"}]
CREATED = 1_700_000_000


def chat(**fields: Any) -> dict[str, Any]:
    return {"model": "org/chat-model", "messages": USER_HI, **fields}


def prompt(**fields: Any) -> dict[str, Any]:
    return {"model": "org/text-model", "prompt": "Once", **fields}


def raw(body: object) -> bytes:
    return json.dumps(body).encode()


def runtime_sse(payload: object, *, ascii_only: bool = True) -> bytes:
    """One event as the runtime writes it (``sse_event`` in the runtime app)."""
    return f"data: {json.dumps(payload, ensure_ascii=ascii_only)}\n\n".encode()


def decode_sse(stream: bytes) -> list[Any]:
    """The data of each event of a complete stream ("[DONE]" kept as a string)."""
    assert stream.endswith(b"\n\n")
    events = []
    for block in stream.decode().split("\n\n")[:-1]:
        assert block.startswith("data: ")
        data = block.removeprefix("data: ")
        events.append(data if data == "[DONE]" else json.loads(data))
    return events


# --- request mapping ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (chat(), {"messages": USER_HI, "params": {"max_new_tokens": DEFAULT_MAX_TOKENS}, "stream": False}),
        (
            chat(temperature=0, top_p=0.5, max_tokens=12, stream=True),
            {"messages": USER_HI, "params": {"max_new_tokens": 12, "do_sample": False}, "stream": True},
        ),
        (
            chat(temperature=0.7, max_completion_tokens=30),
            {"messages": USER_HI, "params": {"max_new_tokens": 30, "do_sample": True, "temperature": 0.7}},
        ),
        (
            chat(top_p=0.9, max_tokens=5, max_completion_tokens=5),
            {"messages": USER_HI, "params": {"max_new_tokens": 5, "do_sample": True, "top_p": 0.9}},
        ),
        (
            chat(temperature=1, top_p=1),
            {"params": {"max_new_tokens": 256, "do_sample": True, "temperature": 1, "top_p": 1}},
        ),
        (
            chat(
                temperature=None,
                top_p=None,
                max_tokens=None,
                n=None,
                stop=None,
                stream=None,
                stream_options=None,
                seed=None,
                user=None,
                presence_penalty=None,
                frequency_penalty=None,
            ),
            {"messages": USER_HI, "params": {"max_new_tokens": DEFAULT_MAX_TOKENS}, "stream": False},
        ),
        (
            chat(seed=7, user="u-1", n=1, presence_penalty=0, frequency_penalty=0.0, stop="END"),
            {"messages": USER_HI, "params": {"max_new_tokens": DEFAULT_MAX_TOKENS}, "stream": False},
        ),
        (
            chat(
                messages=[
                    {"role": "developer", "content": "be brief"},
                    {"role": "system", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
                    {"role": "user", "content": "hi", "name": "ann"},
                    {"role": "assistant", "content": []},
                ]
            ),
            {
                "messages": [
                    {"role": "system", "content": "be brief"},
                    {"role": "system", "content": "a\nb"},
                    {"role": "user", "content": "hi"},
                    {"role": "assistant", "content": ""},
                ]
            },
        ),
        (
            chat(stream=True, stream_options={"include_usage": True}),
            {"stream": True},
        ),
    ],
)
def test_chat_request_to_run_body(body: dict[str, Any], expected: dict[str, Any]) -> None:
    run_body = to_run_body(parse_request(ChatCompletionRequest, raw(body)), task="chat")
    assert set(run_body) == {"messages", "params", "stream"}
    assert run_body == run_body | expected


@pytest.mark.parametrize(
    ("body", "task", "expected"),
    [
        (
            prompt(),
            "text-generation",
            {
                "text": "Once",
                "params": {"max_new_tokens": DEFAULT_MAX_TOKENS, "return_full_text": False},
                "stream": False,
            },
        ),
        (
            prompt(prompt=["Once"], max_tokens=3, temperature=0, stream=True, echo=False),
            "text-generation",
            {"text": "Once", "params": {"max_new_tokens": 3, "do_sample": False, "return_full_text": False}},
        ),
        (
            prompt(temperature=0.2, stream=True),
            "summarization",
            {
                "text": "Once",
                "params": {"max_new_tokens": DEFAULT_MAX_TOKENS, "do_sample": True, "temperature": 0.2},
                "stream": True,
            },
        ),
    ],
)
def test_completion_request_to_run_body(body: dict[str, Any], task: str, expected: dict[str, Any]) -> None:
    run_body = to_run_body(parse_request(CompletionRequest, raw(body)), task=task)
    assert set(run_body) == {"text", "params", "stream"}
    assert run_body == run_body | expected


def test_stop_sequences_go_to_the_runtime_only_when_asked() -> None:
    request = parse_request(ChatCompletionRequest, raw(chat(stop=["a", "bc"])))
    assert request.stop == ["a", "bc"]
    assert "stop_strings" not in to_run_body(request)["params"]
    assert to_run_body(request, runtime_stop=True)["params"]["stop_strings"] == ["a", "bc"]
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


@pytest.mark.parametrize(
    ("status", "body", "expected_status", "message"),
    [
        (422, b'{"error": "unknown param(s) for chat: foo", "output": null}', 400, "unknown param(s) for chat: foo"),
        (503, b'{"error": "Model is not ready yet", "output": null}', 503, "Model is not ready yet"),
        (504, b'{"error": "the request took longer than 5s", "output": null}', 504, "the request took longer than 5s"),
        (500, b"Internal Server Error", 500, "Internal Server Error"),
        (502, b"", 502, "the model answered HTTP 502"),
        (200, b'{"error": "odd"}', 502, "the model answered HTTP 200: odd"),
    ],
)
def test_runtime_errors(status: int, body: bytes, expected_status: int, message: str) -> None:
    error = runtime_error(status, body)
    assert (error.status, error.message) == (expected_status, message)


# --- usage, stop sequences, finish reason ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, None),
        ({"content-type": "application/json"}, None),
        ({"X-Prompt-Tokens": "5", "X-Completion-Tokens": "7"}, TokenUsage(5, 7)),
        ({"x-prompt-tokens": "5"}, TokenUsage(5, 0)),
        ({"X-COMPLETION-TOKENS": " 3 "}, TokenUsage(0, 3)),
        ({"X-Prompt-Tokens": "lots", "X-Completion-Tokens": "-2"}, TokenUsage(0, 0)),
    ],
)
def test_usage_from_headers(headers: dict[str, str], expected: TokenUsage | None) -> None:
    assert usage_from_headers(headers) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"prompt_tokens": 2, "completion_tokens": 3}, TokenUsage(2, 3)),
        ({"prompt_tokens": True, "completion_tokens": 1.5}, TokenUsage(0, 0)),
        ({}, TokenUsage(0, 0)),
        (None, None),
        ([1, 2], None),
    ],
)
def test_usage_from_mapping(value: object, expected: TokenUsage | None) -> None:
    assert TokenUsage.from_mapping(value) == expected


def test_usage_totals() -> None:
    assert TokenUsage(2, 3).as_dict() == {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5}


@pytest.mark.parametrize(
    ("stopped", "usage", "max_tokens", "expected"),
    [
        (False, None, 10, "stop"),
        (False, TokenUsage(1, 9), 10, "stop"),
        (False, TokenUsage(1, 10), 10, "length"),
        (True, TokenUsage(1, 10), 10, "stop"),
        (False, TokenUsage(1, 10), None, "stop"),
    ],
)
def test_finish_reason(stopped: bool, usage: TokenUsage | None, max_tokens: int | None, expected: str) -> None:
    assert finish_reason(stopped, usage, max_tokens) == expected


@pytest.mark.parametrize(
    ("text", "stops", "expected"),
    [
        ("hello world", [], ("hello world", False)),
        ("hello world", ["o"], ("hell", True)),
        ("hello world", ["world", "lo w"], ("hel", True)),
        ("abcd", ["abcd", "c"], ("ab", True)),
        ("abcd", ["bc", "abc"], ("", True)),
        ("xabcd", ["bcd", "abc"], ("x", True)),
        ("hello", ["lox"], ("hello", False)),
        ("END", ["END"], ("", True)),
    ],
)
def test_apply_stop(text: str, stops: list[str], expected: tuple[str, bool]) -> None:
    assert apply_stop(text, stops) == expected


def test_stop_trimmer_holds_back_a_possible_stop() -> None:
    trimmer = StopTrimmer(["</s>"])
    assert trimmer.feed("abc<") == "abc"
    assert trimmer.feed("/") == ""
    assert trimmer.feed("x") == "</x"
    assert trimmer.feed("y</") == "y"
    assert trimmer.feed("s>tail") == ""
    assert trimmer.stopped
    assert trimmer.feed("more") == ""
    assert trimmer.flush() == ""


def split_at(text: str, cuts: list[int]) -> list[str]:
    points = sorted({cut % (len(text) + 1) for cut in cuts})
    return [text[start:end] for start, end in zip([0, *points], [*points, len(text)], strict=True)]


@given(
    text=st.text(alphabet="abc<>", max_size=40),
    stops=st.lists(st.text(alphabet="abc<>", min_size=1, max_size=4), max_size=3),
    cuts=st.lists(st.integers(min_value=0, max_value=60), max_size=10),
)
def test_stop_trimming_does_not_depend_on_chunking(text: str, stops: list[str], cuts: list[int]) -> None:
    whole, stopped = apply_stop(text, stops)
    trimmer = StopTrimmer(stops)
    streamed = "".join(trimmer.feed(piece) for piece in split_at(text, cuts)) + trimmer.flush()
    assert (streamed, trimmer.stopped) == (whole, stopped)
    assert text.startswith(whole)
    assert not any(stop in whole for stop in stops)
    if stopped:
        assert any(text[len(whole) :].startswith(stop) for stop in stops)


# --- response bodies ---------------------------------------------------------------------------------------------


def test_chat_completion_shape() -> None:
    body = chat_completion(
        "org/chat-model", {"role": "assistant", "content": "Hi there"}, TokenUsage(4, 2), CREATED, "abc", max_tokens=100
    )
    assert body == {
        "id": "chatcmpl-abc",
        "object": "chat.completion",
        "created": CREATED,
        "model": "org/chat-model",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hi there"},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6},
    }


def test_completion_shape() -> None:
    body = completion("org/text-model", " upon a time", None, CREATED, "xyz")
    assert body == {
        "id": "cmpl-xyz",
        "object": "text_completion",
        "created": CREATED,
        "model": "org/text-model",
        "choices": [{"index": 0, "text": " upon a time", "logprobs": None, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
    }


def test_responses_apply_stop_and_length() -> None:
    stopped = chat_completion("m", "one. two.", TokenUsage(1, 5), CREATED, "a", stop=["."], max_tokens=5)
    assert stopped["choices"][0]["message"]["content"] == "one"
    assert stopped["choices"][0]["finish_reason"] == "stop"
    cut_off = completion("m", "one two", TokenUsage(1, 5), CREATED, "a", stop=["!"], max_tokens=5)
    assert cut_off["choices"][0]["text"] == "one two"
    assert cut_off["choices"][0]["finish_reason"] == "length"


@pytest.mark.parametrize("output", [None, 3, ["a"], {"role": "assistant"}, {"content": 1}])
def test_output_that_is_not_text(output: object) -> None:
    with pytest.raises(ApiError) as caught:
        output_text(output)
    assert caught.value.status == 502


def test_models_list() -> None:
    assert models_list([("openai-community/gpt2", 10), ("local-model", 20)]) == {
        "object": "list",
        "data": [
            {"id": "openai-community/gpt2", "object": "model", "created": 10, "owned_by": "openai-community"},
            {"id": "local-model", "object": "model", "created": 20, "owned_by": "modelcluster"},
        ],
    }
    assert models_list([]) == {"object": "list", "data": []}


def test_sse_framing() -> None:
    assert sse({"a": "é\n"}) == 'data: {"a":"é\\n"}\n\n'.encode()
    assert SSE_DONE == b"data: [DONE]\n\n"


def test_chunk_builders() -> None:
    first = chat_chunk("m", "r", CREATED, role=True, content="")
    assert first == {
        "id": "chatcmpl-r",
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": "m",
        "choices": [
            {"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}
        ],
    }
    last = chat_chunk("m", "r", CREATED, finish_reason="length", usage_field=True)
    assert last["choices"][0]["delta"] == {}
    assert last["choices"][0]["finish_reason"] == "length"
    assert last["usage"] is None
    text = completion_chunk("m", "r", CREATED, text="x")
    assert text["id"] == "cmpl-r"
    assert text["object"] == "text_completion"
    assert text["choices"] == [{"index": 0, "text": "x", "logprobs": None, "finish_reason": None}]
    assert "usage" not in text
    assert usage_chunk("chat", "m", "r", CREATED, TokenUsage(1, 2))["usage"] == {
        "prompt_tokens": 1,
        "completion_tokens": 2,
        "total_tokens": 3,
    }
    assert usage_chunk("completion", "m", "r", CREATED, None)["choices"] == []


# --- streaming ---------------------------------------------------------------------------------------------------


def translate(translator: StreamTranslator, events: list[StreamEvent], *, close: bool = False) -> list[Any]:
    out = translator.start() + b"".join(translator.feed(event) for event in events)
    if close:
        out += translator.close()
    return decode_sse(out)


def chat_translator(**options: Any) -> StreamTranslator:
    return StreamTranslator("chat", "m", "r", CREATED, **options)


def test_chat_stream_sequence() -> None:
    events = translate(chat_translator(max_tokens=50), [Delta("Hel"), Delta("lo"), TokenUsage(3, 2), Done()])
    assert [event["choices"][0]["delta"] for event in events[:-1]] == [
        {"role": "assistant", "content": ""},
        {"content": "Hel"},
        {"content": "lo"},
        {},
    ]
    assert [event["choices"][0]["finish_reason"] for event in events[:-1]] == [None, None, None, "stop"]
    assert all("usage" not in event for event in events[:-1])
    assert {event["id"] for event in events[:-1]} == {"chatcmpl-r"}
    assert events[-1] == "[DONE]"


def test_chat_stream_with_usage() -> None:
    events = translate(
        chat_translator(include_usage=True, max_tokens=2), [Delta("a"), TokenUsage(3, 2), Delta("b"), Done()]
    )
    assert [event["usage"] for event in events[:-2]] == [None] * 4
    assert events[3]["choices"][0]["finish_reason"] == "length"
    assert events[-2]["choices"] == []
    assert events[-2]["usage"] == {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    assert events[-1] == "[DONE]"


def test_stream_usage_defaults_to_zero() -> None:
    events = translate(chat_translator(include_usage=True), [Delta("a"), Done()])
    assert events[-2]["usage"] == {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}


def test_completion_stream_sequence() -> None:
    translator = StreamTranslator("completion", "m", "r", CREATED)
    assert translator.start() == b""
    events = translate(translator, [Delta(" upon"), Delta(" a time"), Done()])
    assert [event["choices"][0]["text"] for event in events[:-1]] == [" upon", " a time", ""]
    assert [event["choices"][0]["finish_reason"] for event in events[:-1]] == [None, None, "stop"]
    assert {event["object"] for event in events[:-1]} == {"text_completion"}
    assert events[-1] == "[DONE]"


def test_stream_stops_at_a_stop_sequence() -> None:
    translator = StreamTranslator("completion", "m", "r", CREATED, stop=["\n\n"], include_usage=True)
    events = translate(translator, [Delta("one\n"), Delta("\ntwo"), Delta("three"), Done()])
    assert translator.finished
    assert [event["choices"][0]["text"] for event in events[:-2]] == ["one", ""]
    assert events[-3]["choices"][0]["finish_reason"] == "stop"
    assert events[-2]["choices"] == []
    assert events[-1] == "[DONE]"


def test_held_back_text_is_sent_at_the_end() -> None:
    events = translate(StreamTranslator("completion", "m", "r", CREATED, stop=["END"]), [Delta("a E"), Done()])
    assert [event["choices"][0]["text"] for event in events[:-1]] == ["a ", "E", ""]


@pytest.mark.parametrize(
    ("events", "close", "message"),
    [
        ([Delta("a"), Failure("inference failed: CUDA error")], False, "inference failed: CUDA error"),
        ([Delta("a")], True, "the model stream ended before the generation finished"),
    ],
)
def test_stream_failures(events: list[StreamEvent], close: bool, message: str) -> None:
    translator = chat_translator()
    out = translate(translator, events, close=close)
    assert out[-2] == {"error": {"message": message, "type": "server_error", "param": None, "code": None}}
    assert out[-1] == "[DONE]"
    assert translator.finished
    assert translator.feed(Delta("late")) == b""
    assert translator.close() == b""
    assert translator.fail("again") == b""


def test_translator_for_request() -> None:
    request = parse_request(
        ChatCompletionRequest, raw(chat(stream=True, stream_options={"include_usage": True}, stop="x", max_tokens=3))
    )
    translator = StreamTranslator.for_request(request, "id1", CREATED)
    assert (translator.kind, translator.model, translator.include_usage, translator.max_tokens) == (
        "chat",
        "org/chat-model",
        True,
        3,
    )
    assert translator.trimmer.stops == ("x",)
    assert StreamTranslator.for_request(parse_request(CompletionRequest, raw(prompt())), "id2", 0).kind == "completion"


# --- the runtime's SSE stream ------------------------------------------------------------------------------------

SAMPLE_STREAM = (
    runtime_sse({"error": None, "output": "Hé"}, ascii_only=False)
    + runtime_sse({"error": None, "output": "llo 👋"}, ascii_only=False)
    + runtime_sse({"error": None, "output": "", "usage": {"prompt_tokens": 4, "completion_tokens": 3}})
    + SSE_DONE
)
SAMPLE_EVENTS: list[StreamEvent] = [Delta("Hé"), Delta("llo 👋"), TokenUsage(4, 3), Done()]


def parse_all(chunks: Iterator[bytes] | list[bytes]) -> list[StreamEvent]:
    parser = StreamParser()
    events = [event for chunk in chunks for event in parser.feed(chunk)]
    return events + parser.close()


def test_parser_whole_stream() -> None:
    assert parse_all([SAMPLE_STREAM]) == SAMPLE_EVENTS


def test_parser_byte_by_byte() -> None:
    assert parse_all(SAMPLE_STREAM[i : i + 1] for i in range(len(SAMPLE_STREAM))) == SAMPLE_EVENTS


def test_parser_ignores_comments_other_fields_and_crlf() -> None:
    stream = (
        b': keep-alive\r\n\r\nevent: message\r\nid: 1\r\ndata:{"error":null,"output":"a"}\r\n\r\n'
        b'data: {"error": null,\r\ndata:  "output": "b"}\n\n\n\ndata: [DONE]\n\n'
    )
    assert parse_all([stream]) == [Delta("a"), Delta("b"), Done()]


@pytest.mark.parametrize(
    ("stream", "expected"),
    [
        (
            runtime_sse({"error": "the request took longer than 5s", "output": None}),
            Failure("the request took longer than 5s"),
        ),
        (b"data: {oops\n\n", Failure("the model sent a malformed event: '{oops'")),
        (b"data: [1]\n\n", Failure("the model sent a malformed event: '[1]'")),
        (runtime_sse({"error": None, "output": "a"}), Failure("the model stream ended before the generation finished")),
        (b"", Failure("the model stream ended before the generation finished")),
    ],
)
def test_parser_failures(stream: bytes, expected: Failure) -> None:
    events = parse_all([stream])
    assert events[-1] == expected
    assert sum(isinstance(event, Failure) for event in events) == 1


def test_parser_stops_after_done_or_failure() -> None:
    parser = StreamParser()
    assert parser.feed(SSE_DONE + runtime_sse({"error": None, "output": "late"})) == [Done()]
    assert parser.finished
    assert parser.feed(runtime_sse({"error": None, "output": "later"})) == []
    assert parser.close() == []


def test_parser_bounds_an_event() -> None:
    parser = StreamParser(max_event_bytes=64)
    assert parser.feed(b"data: " + b"x" * 40) == []
    assert parser.feed(b"x" * 40) == [Failure("the model sent an event larger than 64 bytes")]
    assert parser.feed(b"\n\n") == []


event_strategy = st.one_of(
    st.builds(Delta, st.text(min_size=1, max_size=12)),
    st.builds(TokenUsage, st.integers(0, 10**6), st.integers(0, 10**6)),
)


def encode_runtime(event: StreamEvent, ascii_only: bool) -> bytes:
    if isinstance(event, Delta):
        return runtime_sse({"error": None, "output": event.text}, ascii_only=ascii_only)
    if isinstance(event, TokenUsage):
        usage = {"prompt_tokens": event.prompt_tokens, "completion_tokens": event.completion_tokens}
        return runtime_sse({"error": None, "output": "", "usage": usage})
    if isinstance(event, Failure):
        return runtime_sse({"error": event.message, "output": None}, ascii_only=ascii_only)
    return SSE_DONE


@given(
    events=st.lists(event_strategy, max_size=8),
    end=st.one_of(st.just(Done()), st.builds(Failure, st.text(min_size=1, max_size=20))),
    ascii_only=st.booleans(),
    cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=30),
)
def test_parser_any_chunking(events: list[StreamEvent], end: StreamEvent, ascii_only: bool, cuts: list[int]) -> None:
    stream = b"".join(encode_runtime(event, ascii_only) for event in [*events, end])
    points = sorted({cut % (len(stream) + 1) for cut in cuts})
    chunks = [stream[start:stop] for start, stop in zip([0, *points], [*points, len(stream)], strict=True)]
    assert parse_all(chunks) == [*events, end]


# --- the openai client over these bodies -------------------------------------------------------------------------

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
        parsed: ChatCompletionRequest | CompletionRequest
        try:
            if path == "/chat/completions":
                parsed = parse_request(ChatCompletionRequest, request.content)
            else:
                parsed = parse_request(CompletionRequest, request.content)
        except ApiError as error:
            return httpx2.Response(error.openai_status, json=openai_error_body(error))
        if parsed.stream:
            translator = StreamTranslator.for_request(parsed, "req1", CREATED)
            parser = StreamParser()
            out = translator.start()
            for event in parser.feed(runtime_stream) + parser.close():
                out += translator.feed(event)
            out += translator.close()
            return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=out)
        usage = usage_from_headers({"X-Prompt-Tokens": "5", "X-Completion-Tokens": "2"})
        if isinstance(parsed, ChatCompletionRequest):
            output: object = {"role": "assistant", "content": "Hello!"}
            body = chat_completion(parsed.model, output, usage, CREATED, "req1", max_tokens=parsed.max_new_tokens)
        else:
            body = completion(parsed.model, " upon a time", usage, CREATED, "req1", max_tokens=parsed.max_new_tokens)
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
