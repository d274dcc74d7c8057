"""Between OpenAI requests and the runtime: generation params, runtime errors, token counts, stop sequences."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelcluster.api.errors import ApiError
from modelcluster.api.streaming import TokenUsage
from modelcluster.gateway.openai.protocol import ChatCompletionRequest, parse_request
from modelcluster.gateway.openai.translate import (
    StopTrimmer,
    apply_stop,
    finish_reason,
    output_text,
    run_params,
    runtime_error,
    usage_from_headers,
)

from openai_bodies import chat, raw


def test_stop_sequences_go_to_the_runtime_only_when_asked() -> None:
    request = parse_request(ChatCompletionRequest, raw(chat(stop=["a", "bc"])))
    assert request.stop == ["a", "bc"]
    assert "stop_strings" not in run_params(request)
    assert run_params(request, runtime_stop=True)["stop_strings"] == ["a", "bc"]


# --- errors ------------------------------------------------------------------------------------------------------


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


@pytest.mark.parametrize("output", [None, 3, ["a"], {"role": "assistant"}, {"content": 1}])
def test_output_that_is_not_text(output: object) -> None:
    with pytest.raises(ApiError) as caught:
        output_text(output)
    assert caught.value.status == 502
