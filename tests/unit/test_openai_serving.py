"""The chat and completion families: runtime bodies, whole answers, chunks and the stream translation."""

from __future__ import annotations

from typing import Any

import pytest

from modelcluster.api.streaming import Delta, Done, Failure, StreamEvent, TokenUsage
from modelcluster.gateway.openai.protocol import DEFAULT_MAX_TOKENS
from modelcluster.gateway.openai.serving_chat import CHAT
from modelcluster.gateway.openai.serving_completion import COMPLETION
from modelcluster.gateway.openai.streaming import SSE_DONE, StreamTranslator, sse

from openai_bodies import CREATED, USER_HI, chat, decode_sse, prompt, raw

# --- runtime bodies ----------------------------------------------------------------------------------------------


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
    run_body = CHAT.run_body(CHAT.parse(raw(body)), task="chat")
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
    run_body = COMPLETION.run_body(COMPLETION.parse(raw(body)), task=task)
    assert set(run_body) == {"text", "params", "stream"}
    assert run_body == run_body | expected


# --- response bodies ---------------------------------------------------------------------------------------------


def test_chat_completion_shape() -> None:
    output = {"role": "assistant", "content": "Hi there"}
    body = CHAT.response("org/chat-model", output, TokenUsage(4, 2), CREATED, "abc", max_tokens=100)
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
    body = COMPLETION.response("org/text-model", " upon a time", None, CREATED, "xyz")
    assert body == {
        "id": "cmpl-xyz",
        "object": "text_completion",
        "created": CREATED,
        "model": "org/text-model",
        "choices": [{"index": 0, "text": " upon a time", "logprobs": None, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
    }


def test_responses_apply_stop_and_length() -> None:
    stopped = CHAT.response("m", "one. two.", TokenUsage(1, 5), CREATED, "a", stop=["."], max_tokens=5)
    assert stopped["choices"][0]["message"]["content"] == "one"
    assert stopped["choices"][0]["finish_reason"] == "stop"
    cut_off = COMPLETION.response("m", "one two", TokenUsage(1, 5), CREATED, "a", stop=["!"], max_tokens=5)
    assert cut_off["choices"][0]["text"] == "one two"
    assert cut_off["choices"][0]["finish_reason"] == "length"


def test_sse_framing() -> None:
    assert sse({"a": "é\n"}) == 'data: {"a":"é\\n"}\n\n'.encode()
    assert SSE_DONE == b"data: [DONE]\n\n"


def test_chunk_builders() -> None:
    first = CHAT.chunk("m", "r", CREATED, CHAT.opening())
    assert first == {
        "id": "chatcmpl-r",
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": "m",
        "choices": [
            {"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}
        ],
    }
    last = CHAT.chunk("m", "r", CREATED, CHAT.delta(None), finish_reason="length", usage_field=True)
    assert last["choices"][0]["delta"] == {}
    assert last["choices"][0]["finish_reason"] == "length"
    assert last["usage"] is None
    text = COMPLETION.chunk("m", "r", CREATED, COMPLETION.delta("x"))
    assert text["id"] == "cmpl-r"
    assert text["object"] == "text_completion"
    assert text["choices"] == [{"index": 0, "text": "x", "logprobs": None, "finish_reason": None}]
    assert "usage" not in text
    assert CHAT.usage_chunk("m", "r", CREATED, TokenUsage(1, 2))["usage"] == {
        "prompt_tokens": 1,
        "completion_tokens": 2,
        "total_tokens": 3,
    }
    assert COMPLETION.usage_chunk("m", "r", CREATED, None)["choices"] == []


# --- streaming ---------------------------------------------------------------------------------------------------


def translate(translator: StreamTranslator, events: list[StreamEvent], *, close: bool = False) -> list[Any]:
    out = translator.start() + b"".join(translator.feed(event) for event in events)
    if close:
        out += translator.close()
    return decode_sse(out)


def chat_translator(**options: Any) -> StreamTranslator:
    return StreamTranslator(CHAT, "m", "r", CREATED, **options)


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
    translator = StreamTranslator(COMPLETION, "m", "r", CREATED)
    assert translator.start() == b""
    events = translate(translator, [Delta(" upon"), Delta(" a time"), Done()])
    assert [event["choices"][0]["text"] for event in events[:-1]] == [" upon", " a time", ""]
    assert [event["choices"][0]["finish_reason"] for event in events[:-1]] == [None, None, "stop"]
    assert {event["object"] for event in events[:-1]} == {"text_completion"}
    assert events[-1] == "[DONE]"


def test_stream_stops_at_a_stop_sequence() -> None:
    translator = StreamTranslator(COMPLETION, "m", "r", CREATED, stop=["\n\n"], include_usage=True)
    events = translate(translator, [Delta("one\n"), Delta("\ntwo"), Delta("three"), Done()])
    assert translator.finished
    assert [event["choices"][0]["text"] for event in events[:-2]] == ["one", ""]
    assert events[-3]["choices"][0]["finish_reason"] == "stop"
    assert events[-2]["choices"] == []
    assert events[-1] == "[DONE]"


def test_held_back_text_is_sent_at_the_end() -> None:
    events = translate(StreamTranslator(COMPLETION, "m", "r", CREATED, stop=["END"]), [Delta("a E"), Done()])
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
    request = CHAT.parse(raw(chat(stream=True, stream_options={"include_usage": True}, stop="x", max_tokens=3)))
    translator = CHAT.translator(request, "id1", CREATED)
    assert (translator.serving, translator.model, translator.include_usage, translator.max_tokens) == (
        CHAT,
        "org/chat-model",
        True,
        3,
    )
    assert translator.trimmer.stops == ("x",)
    assert COMPLETION.translator(COMPLETION.parse(raw(prompt())), "id2", 0).serving is COMPLETION
