"""Each provider's stand-in, checked by that provider's official Python SDK pointed at it.

Answers parse into the SDK's types, streams iterate, and errors raise the SDK's documented exceptions; a stand-in
the SDK does not understand would not be a stand-in of that provider.
"""

from __future__ import annotations

from typing import Any

import anthropic
import cohere
import openai
import pytest
from cohere import errors as cohere_errors
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as genai_types
from mistralai.client import Mistral
from mistralai.client import errors as mistral_errors

from support.providers import RETRY_AFTER_S, TEXT, WHOLE_TEXT, StandIn

HI = [{"role": "user", "content": "hi"}]


# --- OpenAI ------------------------------------------------------------------------------------------------------


def openai_sdk(standin: StandIn, key: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(api_key=key or standin.key, base_url=standin.url + "/v1", max_retries=0)


def test_openai_sdk_reads_the_openai_standin(standins: dict[str, StandIn]) -> None:
    standin = standins["openai"]
    client = openai_sdk(standin)
    answer = client.chat.completions.create(model="gpt-4o-mini", messages=HI)  # type: ignore[arg-type]
    assert answer.choices[0].message.content == WHOLE_TEXT
    assert answer.usage is not None
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == standin.usage
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=HI,  # type: ignore[arg-type]
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content] == list(TEXT)
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == standin.usage[1]


@pytest.mark.parametrize(
    ("model", "key", "exception"),
    [
        ("gpt-4o-mini", "sk-wrong-key-0000000000000000", openai.AuthenticationError),
        ("rate-limited", None, openai.RateLimitError),
        ("overloaded", None, openai.InternalServerError),
        ("broken", None, openai.InternalServerError),
    ],
)
def test_openai_standin_errors_raise_the_sdks_exceptions(
    standins: dict[str, StandIn], model: str, key: str | None, exception: type[Exception]
) -> None:
    with pytest.raises(exception) as caught:
        openai_sdk(standins["openai"], key).chat.completions.create(model=model, messages=HI)  # type: ignore[arg-type]
    if model == "rate-limited":
        assert isinstance(caught.value, openai.RateLimitError)
        assert caught.value.response.headers["retry-after"] == str(RETRY_AFTER_S)
    if key is not None:
        assert isinstance(caught.value, openai.AuthenticationError)
        assert caught.value.code == "invalid_api_key"


def test_openai_standin_error_after_200_raises_in_the_stream(standins: dict[str, StandIn]) -> None:
    stream = openai_sdk(standins["openai"]).chat.completions.create(
        model="fails-midway",
        messages=HI,  # type: ignore[arg-type]
        stream=True,
    )
    with pytest.raises(openai.APIError, match="server had an error"):
        list(stream)


# --- Anthropic ---------------------------------------------------------------------------------------------------


def anthropic_sdk(standin: StandIn, key: str | None = None) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key=key or standin.key, base_url=standin.url, max_retries=0)


def test_anthropic_sdk_reads_the_anthropic_standin(standins: dict[str, StandIn]) -> None:
    standin = standins["anthropic"]
    client = anthropic_sdk(standin)
    message = client.messages.create(model="claude-3-haiku-20240307", max_tokens=50, messages=HI)  # type: ignore[arg-type]
    assert isinstance(message, anthropic.types.Message)
    assert message.content[0].type == "text"
    assert message.content[0].text == WHOLE_TEXT
    assert (message.usage.input_tokens, message.usage.output_tokens) == standin.usage
    with client.messages.stream(model="claude-3-haiku-20240307", max_tokens=50, messages=HI) as stream:  # type: ignore[arg-type]
        assert list(stream.text_stream) == list(TEXT)
        final = stream.get_final_message()
    assert final.usage.output_tokens == standin.usage[1]
    assert final.usage.input_tokens == standin.usage[0]


@pytest.mark.parametrize(
    ("model", "key", "exception"),
    [
        ("claude-3-haiku-20240307", "sk-ant-wrong-0000000000000000", anthropic.AuthenticationError),
        ("rate-limited", None, anthropic.RateLimitError),
        ("overloaded", None, anthropic.OverloadedError),
        ("broken", None, anthropic.InternalServerError),
    ],
)
def test_anthropic_standin_errors_raise_the_sdks_exceptions(
    standins: dict[str, StandIn], model: str, key: str | None, exception: type[Exception]
) -> None:
    with pytest.raises(exception) as caught:
        anthropic_sdk(standins["anthropic"], key).messages.create(model=model, max_tokens=5, messages=HI)  # type: ignore[arg-type]
    if model == "rate-limited":
        assert isinstance(caught.value, anthropic.RateLimitError)
        assert caught.value.response.headers["retry-after"] == str(RETRY_AFTER_S)


def test_anthropic_standin_error_event_raises_in_the_stream(standins: dict[str, StandIn]) -> None:
    client = anthropic_sdk(standins["anthropic"])
    with (
        pytest.raises(anthropic.APIStatusError, match="Overloaded"),
        client.messages.stream(model="fails-midway", max_tokens=5, messages=HI) as stream,  # type: ignore[arg-type]
    ):
        list(stream.text_stream)


# --- Google Gemini -----------------------------------------------------------------------------------------------


def gemini_sdk(standin: StandIn, key: str | None = None) -> genai.Client:
    return genai.Client(api_key=key or standin.key, http_options=genai_types.HttpOptions(base_url=standin.url))


def test_genai_sdk_reads_the_gemini_standin(standins: dict[str, StandIn]) -> None:
    standin = standins["google"]
    client = gemini_sdk(standin)
    answer = client.models.generate_content(model="gemini-1.5-flash", contents="hi")
    assert answer.text == WHOLE_TEXT
    assert answer.usage_metadata is not None
    assert (answer.usage_metadata.prompt_token_count, answer.usage_metadata.candidates_token_count) == standin.usage
    chunks = list(client.models.generate_content_stream(model="gemini-1.5-flash", contents="hi"))
    assert [chunk.text for chunk in chunks] == list(TEXT)
    assert chunks[-1].usage_metadata is not None
    assert chunks[-1].usage_metadata.candidates_token_count == standin.usage[1]
    sent = standin.requests[-1]
    assert sent.headers.get("x-goog-api-key") == standin.key
    assert "key" not in sent.query


@pytest.mark.parametrize(
    ("model", "key", "exception", "code"),
    [
        ("gemini-1.5-flash", "AIza-wrong-000000000000000000", genai_errors.ClientError, 400),
        ("rate-limited", None, genai_errors.ClientError, 429),
        ("overloaded", None, genai_errors.ServerError, 503),
        ("broken", None, genai_errors.ServerError, 500),
    ],
)
def test_gemini_standin_errors_raise_the_sdks_exceptions(
    standins: dict[str, StandIn], model: str, key: str | None, exception: type[genai_errors.APIError], code: int
) -> None:
    client = gemini_sdk(standins["google"], key)
    with pytest.raises(exception) as caught:
        client.models.generate_content(model=model, contents="hi")
    assert caught.value.code == code
    if key is not None:
        assert "API_KEY_INVALID" in str(caught.value.details)


def test_gemini_standin_error_after_200_raises_in_the_stream(standins: dict[str, StandIn]) -> None:
    client = gemini_sdk(standins["google"])
    stream = client.models.generate_content_stream(model="fails-midway", contents="hi")
    with pytest.raises(genai_errors.APIError):
        list(stream)


# --- Cohere ------------------------------------------------------------------------------------------------------


def cohere_sdk(standin: StandIn, key: str | None = None) -> cohere.ClientV2:
    return cohere.ClientV2(api_key=key or standin.key, base_url=standin.url)


def test_cohere_sdk_reads_the_cohere_standin(standins: dict[str, StandIn]) -> None:
    standin = standins["cohere"]
    client = cohere_sdk(standin)
    answer = client.chat(model="command-r", messages=HI)  # type: ignore[arg-type]
    assert answer.message.content is not None
    assert answer.message.content[0].text == WHOLE_TEXT  # type: ignore[union-attr]
    assert answer.usage is not None and answer.usage.tokens is not None
    assert (answer.usage.tokens.input_tokens, answer.usage.tokens.output_tokens) == standin.usage
    events = list(client.chat_stream(model="command-r", messages=HI))  # type: ignore[arg-type]
    kinds = [event.type for event in events]
    assert kinds[0] == "message-start"
    assert kinds[-1] == "message-end"
    texts = [event.delta.message.content.text for event in events if event.type == "content-delta"]  # type: ignore[union-attr]
    assert texts == list(TEXT)
    end: Any = events[-1]
    assert end.delta.usage.tokens.output_tokens == standin.usage[1]


@pytest.mark.parametrize(
    ("model", "key", "exception"),
    [
        ("command-r", "wrong-cohere-key-000000000000", cohere_errors.UnauthorizedError),
        ("rate-limited", None, cohere_errors.TooManyRequestsError),
        ("overloaded", None, cohere_errors.ServiceUnavailableError),
        ("broken", None, cohere_errors.InternalServerError),
    ],
)
def test_cohere_standin_errors_raise_the_sdks_exceptions(
    standins: dict[str, StandIn], model: str, key: str | None, exception: type[Exception]
) -> None:
    with pytest.raises(exception):
        cohere_sdk(standins["cohere"], key).chat(model=model, messages=HI)  # type: ignore[arg-type]


def test_cohere_standin_error_after_200_ends_the_stream_with_it(standins: dict[str, StandIn]) -> None:
    events: list[Any] = list(cohere_sdk(standins["cohere"]).chat_stream(model="fails-midway", messages=HI))  # type: ignore[arg-type]
    assert events[-1].type == "message-end"
    assert events[-1].delta.finish_reason == "ERROR"
    assert events[-1].delta.error


# --- Mistral -----------------------------------------------------------------------------------------------------


def mistral_sdk(standin: StandIn, key: str | None = None) -> Mistral:
    return Mistral(api_key=key or standin.key, server_url=standin.url)


def test_mistral_sdk_reads_the_mistral_standin(standins: dict[str, StandIn]) -> None:
    standin = standins["mistral"]
    client = mistral_sdk(standin)
    answer = client.chat.complete(model="mistral-small-latest", messages=HI)  # type: ignore[arg-type]
    assert answer.choices[0].message.content == WHOLE_TEXT
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == standin.usage
    events = list(client.chat.stream(model="mistral-small-latest", messages=HI))  # type: ignore[arg-type]
    texts = [event.data.choices[0].delta.content for event in events if event.data.choices[0].delta.content]
    assert texts == list(TEXT)
    assert events[-1].data.usage is not None
    assert events[-1].data.usage.completion_tokens == standin.usage[1]


@pytest.mark.parametrize(
    ("model", "key", "status"),
    [
        ("mistral-small-latest", "wrong-mistral-key-00000000000", 401),
        ("rate-limited", None, 429),
        ("overloaded", None, 503),
        ("broken", None, 500),
    ],
)
def test_mistral_standin_errors_raise_the_sdks_exceptions(
    standins: dict[str, StandIn], model: str, key: str | None, status: int
) -> None:
    with pytest.raises(mistral_errors.SDKError) as caught:
        mistral_sdk(standins["mistral"], key).chat.complete(model=model, messages=HI)  # type: ignore[arg-type]
    assert caught.value.status_code == status


def test_mistral_standin_refuses_fields_it_does_not_know(standins: dict[str, StandIn]) -> None:
    import httpx

    answer = httpx.post(
        standins["mistral"].url + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {standins['mistral'].key}"},
        json={"model": "m", "messages": HI, "stream_options": {"include_usage": True}},
    )
    assert answer.status_code == 422
    assert answer.json()["message"]["detail"][0]["type"] == "extra_forbidden"
