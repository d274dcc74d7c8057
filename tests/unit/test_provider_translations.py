"""The provider translations without a network: unified body -> provider request, answers, streams, errors."""

from __future__ import annotations

import json
from typing import Any

import pytest

from modelcluster.api.errors import ApiError, InputError
from modelcluster.api.inference import run_request_from
from modelcluster.api.streaming import Delta, Done, TokenUsage
from modelcluster.gateway.providers import anthropic_api, cohere_api, google_api, mistral_api, openai_api
from modelcluster.gateway.providers.base import Adapter, ChatRequest, ProviderEvent, StreamFailed
from modelcluster.gateway.providers.errors import retry_after_of
from modelcluster.gateway.providers.registry import ADAPTERS, provider_of
from modelcluster.gateway.providers.scrub import REDACTED, scrub
from modelcluster.gateway.providers.sse import SSEDecoder
from modelcluster.gateway.providers.unified import chat_from_run_request

KEY = "sk-proj-abcdefgh1234567890MxYA"
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGD4DwABBAEAwS2OUAAAAABJRU5ErkJggg=="


def chat(body: dict[str, Any], model: str = "m") -> ChatRequest:
    return chat_from_run_request(run_request_from(body), model)


FULL = {
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "what is it"}, {"type": "image", "base64": PNG}]},
    ],
    "params": {"max_tokens": 50, "temperature": 0.5, "top_p": 0.9, "top_k": 40, "stop": "END", "seed": 7},
    "stream": True,
}


@pytest.mark.parametrize(
    ("adapter", "path", "auth", "expected"),
    [
        (
            openai_api,
            "/chat/completions",
            ("Authorization", f"Bearer {KEY}"),
            {
                "max_completion_tokens": 50,
                "temperature": 0.5,
                "top_p": 0.9,
                "stop": ["END"],
                "seed": 7,
                "stream": True,
                "stream_options": {"include_usage": True},
            },
        ),
        (
            anthropic_api,
            "/v1/messages",
            ("x-api-key", KEY),
            {
                "max_tokens": 50,
                "system": "Be brief.",
                "temperature": 0.5,
                "top_p": 0.9,
                "top_k": 40,
                "stop_sequences": ["END"],
                "stream": True,
            },
        ),
        (
            cohere_api,
            "/v2/chat",
            ("Authorization", f"Bearer {KEY}"),
            {
                "max_tokens": 50,
                "temperature": 0.5,
                "p": 0.9,
                "k": 40,
                "stop_sequences": ["END"],
                "seed": 7,
                "stream": True,
            },
        ),
        (
            mistral_api,
            "/v1/chat/completions",
            ("Authorization", f"Bearer {KEY}"),
            {"max_tokens": 50, "temperature": 0.5, "top_p": 0.9, "stop": ["END"], "random_seed": 7, "stream": True},
        ),
    ],
)
def test_params_take_each_providers_names(
    adapter: Adapter, path: str, auth: tuple[str, str], expected: dict[str, Any]
) -> None:
    upstream = adapter.request(chat(FULL), KEY)
    assert upstream.path == path
    assert upstream.headers[auth[0]] == auth[1]
    params = {name: value for name, value in upstream.body.items() if name not in ("model", "messages")}
    assert params == expected
    assert KEY not in upstream.path


def test_gemini_keys_go_in_a_header_and_params_in_the_generation_config() -> None:
    upstream = google_api.request(chat(FULL, "gemini-1.5-flash"), KEY)
    assert upstream.path == "/v1beta/models/gemini-1.5-flash:streamGenerateContent?alt=sse"
    assert upstream.headers["x-goog-api-key"] == KEY
    assert KEY not in upstream.path
    assert upstream.body["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert upstream.body["generationConfig"] == {
        "maxOutputTokens": 50,
        "temperature": 0.5,
        "topP": 0.9,
        "topK": 40,
        "stopSequences": ["END"],
        "seed": 7,
    }
    parts = upstream.body["contents"][0]["parts"]
    assert parts == [{"text": "what is it"}, {"inlineData": {"mimeType": "image/png", "data": PNG}}]


@pytest.mark.parametrize(
    ("adapter", "image"),
    [
        (openai_api, {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}),
        (cohere_api, {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}),
        (mistral_api, {"type": "image_url", "image_url": f"data:image/png;base64,{PNG}"}),
        (anthropic_api, {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}),
    ],
)
def test_images_take_each_providers_shape(adapter: Adapter, image: dict[str, Any]) -> None:
    body = adapter.request(chat(FULL), KEY).body
    user = next(message for message in body["messages"] if message["role"] == "user")
    assert user["content"][-1] == image


def test_anthropic_defaults_max_tokens_and_merges_turns_of_one_role() -> None:
    body = anthropic_api.request(
        chat({"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]}), KEY
    ).body
    assert body["max_tokens"] == anthropic_api.DEFAULT_MAX_TOKENS
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}
    ]
    assert "system" not in body


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"text": "hi"}, None),
        ({"input": "hi"}, None),
        ({"input": [{"role": "user", "content": "hi"}]}, None),
        ({"messages": [{"role": "user", "content": [{"type": "audio", "url": "https://x/a.wav"}]}]}, "audio"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "role"),
        ({"messages": [{"role": "system", "content": "x"}]}, "user message"),
        ({"messages": [{"role": "user", "content": "x"}], "params": {"max_new_tokens": 0}}, "max_new_tokens"),
        ({"messages": [{"role": "user", "content": "x"}], "params": {"do_sample": True}}, "do_sample"),
        ({"messages": [{"role": "user", "content": "x"}], "params": {"stop": ["a", "b", "c", "d", "e"]}}, "stop"),
        ({"messages": [{"role": "user", "content": [{"type": "image", "base64": "bm90IGFuIGltYWdl"}]}]}, "base64"),
        ({"url": "https://x/a.png", "messages": [{"role": "user", "content": "x"}]}, "url"),
    ],
)
def test_unified_bodies_become_one_chat_or_a_422_naming_the_field(body: dict[str, Any], named: str | None) -> None:
    if named is None:
        request = chat(body)
        assert [(m.role, m.text) for m in request.messages] == [("user", "hi")]
        return
    with pytest.raises(InputError, match=named):
        chat(body)


def test_gemini_refuses_images_by_url() -> None:
    body = {"messages": [{"role": "user", "content": [{"type": "image", "url": "https://example.com/a.png"}]}]}
    with pytest.raises(InputError, match="base64"):
        google_api.request(chat(body), KEY)


ANSWERS = [
    (
        openai_api,
        {
            "choices": [{"message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2},
        },
        ("hi", "stop", TokenUsage(3, 2)),
    ),
    (
        mistral_api,
        {
            "choices": [{"message": {"role": "assistant", "content": "hi"}, "finish_reason": "length"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2},
        },
        ("hi", "length", TokenUsage(3, 2)),
    ),
    (
        anthropic_api,
        {
            "content": [{"type": "text", "text": "h"}, {"type": "tool_use", "id": "t"}, {"type": "text", "text": "i"}],
            "stop_reason": "end_turn",
            "usage": {
                "input_tokens": 3,
                "cache_read_input_tokens": 4,
                "cache_creation_input_tokens": 1,
                "output_tokens": 2,
            },
        },
        ("hi", "end_turn", TokenUsage(8, 2)),
    ),
    (
        google_api,
        {
            "candidates": [
                {"content": {"parts": [{"text": "plan", "thought": True}, {"text": "hi"}]}, "finishReason": "STOP"}
            ],
            "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 2, "thoughtsTokenCount": 5},
        },
        ("hi", "STOP", TokenUsage(3, 7)),
    ),
    (
        cohere_api,
        {
            "message": {"content": [{"type": "thinking", "thinking": "x"}, {"type": "text", "text": "hi"}]},
            "finish_reason": "COMPLETE",
            "usage": {
                "billed_units": {"input_tokens": 9, "output_tokens": 9},
                "tokens": {"input_tokens": 3, "output_tokens": 2},
            },
        },
        ("hi", "COMPLETE", TokenUsage(3, 2)),
    ),
]


@pytest.mark.parametrize(("adapter", "body", "expected"), ANSWERS)
def test_answers_become_text_finish_reason_and_usage(
    adapter: Adapter, body: dict[str, Any], expected: tuple[Any, ...]
) -> None:
    answer = adapter.answer(body)
    assert (answer.text, answer.finish_reason, answer.usage) == expected
    assert answer.raw is body


def events(adapter: Adapter, raw: bytes, chunk: int = 7) -> list[ProviderEvent]:
    """The decoder's events for ``raw`` fed in pieces of ``chunk`` bytes."""
    frames, decoder, out = SSEDecoder(), adapter.decoder(), []
    for start in range(0, len(raw), chunk):
        for message in frames.feed(raw[start : start + chunk]):
            out.extend(decoder.feed(message))
    for message in frames.close():
        out.extend(decoder.feed(message))
    out.extend(decoder.close())
    return out


def sse(payload: Any, event: str | None = None) -> bytes:
    return (f"event: {event}\n" if event else "").encode() + b"data: " + json.dumps(payload).encode() + b"\n\n"


STREAMS = [
    (
        openai_api,
        sse({"choices": [{"delta": {"role": "assistant", "content": ""}}]})
        + sse({"choices": [{"delta": {"content": "Hel"}}]})
        + sse({"choices": [{"delta": {"content": "lo"}, "finish_reason": "stop"}]})
        + sse({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}})
        + b"data: [DONE]\n\n",
    ),
    (
        mistral_api,
        sse({"choices": [{"delta": {"content": "Hel"}}]})
        + sse(
            {
                "choices": [{"delta": {"content": "lo"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 2},
            }
        )
        + b"data: [DONE]\n\n",
    ),
    (
        anthropic_api,
        sse({"type": "message_start", "message": {"usage": {"input_tokens": 3, "output_tokens": 1}}}, "message_start")
        + sse({"type": "ping"}, "ping")
        + sse({"type": "content_block_delta", "delta": {"type": "text_delta", "text": "Hel"}}, "content_block_delta")
        + sse({"type": "message_delta", "usage": {"output_tokens": 1}}, "message_delta")
        + sse({"type": "content_block_delta", "delta": {"type": "text_delta", "text": "lo"}}, "content_block_delta")
        + sse(
            {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 2}},
            "message_delta",
        )
        + sse({"type": "message_stop"}, "message_stop"),
    ),
    (
        google_api,
        sse({"candidates": [{"content": {"parts": [{"text": "Hel"}]}}], "usageMetadata": {"promptTokenCount": 3}})
        + sse(
            {
                "candidates": [{"content": {"parts": [{"text": "lo"}]}, "finishReason": "STOP"}],
                "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 2},
            }
        ),
    ),
    (
        cohere_api,
        sse({"type": "message-start", "delta": {}}, "message-start")
        + sse({"type": "content-delta", "delta": {"message": {"content": {"text": "Hel"}}}}, "content-delta")
        + sse({"type": "content-delta", "delta": {"message": {"content": {"text": "lo"}}}}, "content-delta")
        + sse(
            {
                "type": "message-end",
                "delta": {"finish_reason": "COMPLETE", "usage": {"tokens": {"input_tokens": 3, "output_tokens": 2}}},
            },
            "message-end",
        )
        + b"data: [DONE]\n\n",
    ),
]


@pytest.mark.parametrize(("adapter", "raw"), STREAMS)
@pytest.mark.parametrize("chunk", [1, 7, 10_000])
def test_streams_become_deltas_then_usage_then_done(adapter: Adapter, raw: bytes, chunk: int) -> None:
    assert events(adapter, raw, chunk) == [Delta("Hel"), Delta("lo"), TokenUsage(3, 2), Done()]


ERRORS_AFTER_200 = [
    (
        openai_api,
        sse({"choices": [{"delta": {"content": "Hel"}}]}) + sse({"error": {"message": "boom", "type": "server_error"}}),
        502,
    ),
    (
        anthropic_api,
        sse({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}, "error"),
        503,
    ),
    (google_api, sse({"error": {"code": 503, "message": "busy", "status": "UNAVAILABLE"}}), 503),
    (
        cohere_api,
        sse({"type": "message-end", "delta": {"finish_reason": "ERROR", "error": "boom"}}, "message-end"),
        502,
    ),
    (mistral_api, sse({"choices": [{"delta": {"content": "Hel"}}]}), 502),  # broken off: no finish, no [DONE]
]


@pytest.mark.parametrize(("adapter", "raw", "status"), ERRORS_AFTER_200)
def test_an_error_after_the_200_fails_the_stream_with_its_status(adapter: Adapter, raw: bytes, status: int) -> None:
    failed = events(adapter, raw)[-1]
    assert isinstance(failed, StreamFailed)
    assert failed.error.status == status


def error_of(adapter: Adapter, status: int, body: Any, headers: dict[str, str] | None = None) -> ApiError:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return adapter.error(status, raw, headers or {})


@pytest.mark.parametrize(
    ("adapter", "status", "body", "headers", "expected", "retry_after"),
    [
        (
            openai_api,
            401,
            {"error": {"message": "Incorrect API key", "type": "invalid_request_error", "code": "invalid_api_key"}},
            {},
            401,
            None,
        ),
        (
            openai_api,
            429,
            {"error": {"message": "quota", "type": "insufficient_quota", "code": "insufficient_quota"}},
            {"retry-after": "20"},
            429,
            20,
        ),
        (openai_api, 500, {"error": {"message": "boom", "type": "server_error"}}, {}, 502, None),
        (openai_api, 400, {"error": {"message": "bad", "type": "invalid_request_error"}}, {}, 400, None),
        (
            anthropic_api,
            529,
            {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
            {},
            503,
            5,
        ),
        (
            anthropic_api,
            500,
            {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
            {},
            503,
            5,
        ),
        (
            anthropic_api,
            400,
            {
                "type": "error",
                "error": {
                    "type": "invalid_request_error",
                    "message": "You have reached your specified API usage limits",
                },
            },
            {},
            429,
            None,
        ),
        (
            anthropic_api,
            429,
            {"type": "error", "error": {"type": "rate_limit_error", "message": "slow"}},
            {"retry-after-ms": "1500"},
            429,
            2,
        ),
        (
            anthropic_api,
            413,
            {"type": "error", "error": {"type": "request_too_large", "message": "big"}},
            {},
            413,
            None,
        ),
        (
            google_api,
            400,
            {
                "error": {
                    "code": 400,
                    "message": "API key not valid.",
                    "status": "INVALID_ARGUMENT",
                    "details": [{"reason": "API_KEY_INVALID"}],
                }
            },
            {},
            401,
            None,
        ),
        (google_api, 400, {"error": {"code": 400, "message": "bad", "status": "INVALID_ARGUMENT"}}, {}, 400, None),
        (
            google_api,
            429,
            [
                {
                    "error": {
                        "code": 429,
                        "message": "quota",
                        "status": "RESOURCE_EXHAUSTED",
                        "details": [{"retryDelay": "12.5s"}],
                    }
                }
            ],
            {},
            429,
            13,
        ),
        (google_api, 503, {"error": {"code": 503, "message": "overloaded", "status": "UNAVAILABLE"}}, {}, 503, 5),
        (cohere_api, 498, {"message": "invalid token"}, {}, 401, None),
        (cohere_api, 403, b"<html>Forbidden</html>", {}, 403, None),
        (cohere_api, 503, {"message": "busy"}, {"Retry-After": "3"}, 503, 3),
        (mistral_api, 401, {"detail": "Unauthorized"}, {}, 401, None),
        (
            mistral_api,
            422,
            {"object": "error", "message": {"detail": [{"type": "extra_forbidden"}]}, "type": "invalid_request_error"},
            {},
            422,
            None,
        ),
        (mistral_api, 502, {"message": "bad gateway"}, {}, 502, None),
    ],
)
def test_errors_map_by_the_providers_type_then_status(
    adapter: Adapter, status: int, body: Any, headers: dict[str, str], expected: int, retry_after: int | None
) -> None:
    error = error_of(adapter, status, body, headers)
    assert error.status == expected
    assert error.retry_after == retry_after
    assert error.message.startswith(adapter.name)


def test_retry_after_reads_seconds_milliseconds_and_dates() -> None:
    assert retry_after_of({"Retry-After": "7"}) == 7
    assert retry_after_of({"retry-after": "0.2"}) == 1
    assert retry_after_of({"retry-after-ms": "2500", "retry-after": "60"}) == 3
    assert retry_after_of({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 1
    assert retry_after_of({"Retry-After": "soon"}) is None


@pytest.mark.parametrize(
    "text",
    [
        f"Incorrect API key provided: {KEY}.",
        "Incorrect API key provided: sk-proj-****************MxYA. You can find your API key at ...",
        "Incorrect API key provided: sk-proj-...MxYA.",
        f"connect to https://host/v1?key={KEY[:12]} failed",
    ],
)
def test_scrub_removes_the_key_and_its_fragments(text: str) -> None:
    cleaned = scrub(text, KEY)
    assert KEY not in cleaned
    assert "MxYA" not in cleaned
    assert KEY[:8] not in cleaned
    assert REDACTED in cleaned


def test_scrub_leaves_other_text_alone() -> None:
    assert scrub("Rate limit reached for requests", KEY) == "Rate limit reached for requests"


@pytest.mark.parametrize(
    ("model_id", "open_model", "expected"),
    [
        ("openai/gpt-4o-mini", False, "openai"),
        ("google/gemini-1.5-flash", False, "google"),
        ("google/flan-t5-base", True, None),  # the catalog's open model under Google's org
        ("mistralai/Mistral-7B-Instruct-v0.3", False, None),  # another org
        ("cohere/command-r", False, None),  # cohere not enabled below
    ],
)
def test_provider_routing_is_by_org_after_open_models(model_id: str, open_model: bool, expected: str | None) -> None:
    enabled = ("openai", "anthropic", "google", "mistral")
    assert provider_of(model_id, open_model=open_model, enabled=enabled) == expected


def test_every_provider_has_a_translation() -> None:
    assert set(ADAPTERS) == {"openai", "anthropic", "google", "cohere", "mistral"}
    assert all(adapter.name == name for name, adapter in ADAPTERS.items())


def test_a_disabled_provider_is_a_404_and_open_models_stay_open() -> None:
    from prometheus_client import CollectorRegistry

    from modelcluster.api.errors import NotFound
    from modelcluster.gateway.providers.service import ProviderService
    from modelcluster.gateway.providers.settings import ProviderSettings, ProvidersSettings

    service = ProviderService(ProvidersSettings(cohere=ProviderSettings(enabled=False)), CollectorRegistry())
    assert set(service.clients) == {"openai", "anthropic", "google", "mistral"}
    with pytest.raises(NotFound, match="cohere"):
        service.client_for("cohere/command-r", open_model=False)
    assert service.client_for("cohere/command-r", open_model=True) is None
    client = service.client_for("openai/gpt-4o-mini", open_model=False)
    assert client is not None
    assert client.base_url == "https://api.openai.com/v1"
