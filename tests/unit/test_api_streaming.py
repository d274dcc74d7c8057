"""The runtime's stream framing as the gateway reads it: token counts and the SSE parser."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelcluster.api.streaming import DONE_EVENT, Delta, Done, Failure, StreamEvent, StreamParser, TokenUsage

from openai_bodies import runtime_sse

SSE_DONE = DONE_EVENT.encode()

# --- token counts ------------------------------------------------------------------------------------------------


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
