"""The gateway against the providers' stand-ins, with real clients: the Bytez SDK and OpenAI's.

One gateway (in-process, its real aiohttp server on a loopback port) passes closed models of all five providers
through to their stand-ins. Every answer, every error case and the gateway's whole log are checked for the
callers' provider keys, which must never show.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import pytest
from bytez import Bytez  # type: ignore[import-untyped]

from modelcluster.catalog import load_catalog
from modelcluster.gateway.app import create_app
from modelcluster.gateway.keys import build_key_secret, generate_key
from modelcluster.gateway.keystore import KeyStore
from modelcluster.gateway.providers.settings import ProviderSettings, ProvidersSettings
from modelcluster.gateway.server import api_runner
from modelcluster.gateway.settings import GatewaySettings
from modelcluster.gateway.state import Gateway
from modelcluster.gateway.usage import UsageRecord

from support import FakeKube, eventually
from support.providers import KEYS, PROVIDERS, RETRY_AFTER_S, TEXT, WHOLE_TEXT, ServerThread, StandIn
from support.providers.openai_format import masked
from support.sdk import bytez_sdk

TENANT = "acme"
MODELS = {
    "openai": "openai/gpt-4o-mini",
    "anthropic": "anthropic/claude-3-haiku-20240307",
    "google": "google/gemini-1.5-flash",
    "cohere": "cohere/command-r",
    "mistral": "mistral/mistral-small-latest",
}
HI = [{"role": "user", "content": "Hello my name is Bob and I like to eat"}]
FIRST_BYTE_TIMEOUT_S = 1.0
KEEPALIVE_S = 0.2


@dataclass
class Served:
    url: str
    api_key: str
    gateway: Gateway
    kube: FakeKube
    log: list[str]
    usage: list[UsageRecord]
    standins: dict[str, StandIn]

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Key {self.api_key}"}

    def with_key(self, provider: str) -> dict[str, str]:
        return {**self.headers, "Provider-Key": KEYS[provider]}

    def openai(self, provider: str, key: str | None = None) -> openai.OpenAI:
        return openai.OpenAI(
            api_key=self.api_key,
            base_url=f"{self.url}/models/v2/openai/v1",
            default_headers={"Provider-Key": key or KEYS[provider]},
            max_retries=0,
        )

    def sdk(self) -> Bytez:
        return bytez_sdk(self.url, self.api_key)


class _Capture(logging.Handler):
    def __init__(self, lines: list[str]) -> None:
        super().__init__(logging.DEBUG)
        self.lines = lines
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def _settings(standins: dict[str, StandIn]) -> ProvidersSettings:
    def one(provider: str, suffix: str = "") -> ProviderSettings:
        return ProviderSettings(
            base_url=standins[provider].url + suffix,  # type: ignore[arg-type]
            first_byte_timeout_s=FIRST_BYTE_TIMEOUT_S,
            total_timeout_s=10,
            keepalive_s=KEEPALIVE_S,
        )

    return ProvidersSettings(
        openai=one("openai", "/v1"),
        anthropic=one("anthropic"),
        google=one("google"),
        cohere=one("cohere"),
        mistral=one("mistral"),
    )


@pytest.fixture(scope="module")
def served(servers: ServerThread, standins: dict[str, StandIn]) -> Iterator[Served]:
    lines: list[str] = []
    handler = _Capture(lines)
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    kube = FakeKube()
    api_key = generate_key()
    settings = GatewaySettings(providers=_settings(standins))
    records: list[UsageRecord] = []

    async def build() -> Gateway:
        return Gateway(settings=settings, catalog=load_catalog(), kube=kube)

    gateway = servers.call(build())
    gateway.providers.usage.add(records.append)
    keys = KeyStore("keys", max_staleness_s=600.0)
    secret = build_key_secret(api_key, TENANT, 64, "keys")
    secret["metadata"]["resourceVersion"] = "1"
    keys.reset([secret])
    keys.confirm()
    keys._ready = True
    url = servers.serve(lambda: api_runner(create_app(gateway, keys), settings))
    try:
        yield Served(url, api_key, gateway, kube, lines, records, standins)
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        log = "\n".join(lines)
        for key in KEYS.values():
            assert key not in log
            assert masked(key) not in log
            assert key[:8] not in log


def no_key_in(text: str) -> None:
    for key in KEYS.values():
        assert key not in text
        assert key[:8] not in text
        assert key[-4:] + "." not in text


def last_usage(served: Served, provider: str) -> UsageRecord:
    return [record for record in served.usage if record.provider == provider][-1]


# --- the Bytez SDK -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
def test_the_bytez_sdk_runs_a_closed_model_with_its_provider_key(served: Served, provider: str) -> None:
    model = served.sdk().model(MODELS[provider], KEYS[provider])
    result = model.run(HI, {"max_tokens": 100})
    assert result.error is None
    assert result.output == {"role": "assistant", "content": WHOLE_TEXT}
    assert isinstance(result.provider, dict)
    standin = served.standins[provider]
    sent = standin.requests[-1]
    assert KEYS[provider] not in sent.path + str(sent.query)
    record = last_usage(served, provider)
    assert (record.prompt_tokens, record.completion_tokens) == standin.usage
    assert (record.status, record.complete, record.tenant, record.model) == (200, True, TENANT, MODELS[provider])


@pytest.mark.parametrize("provider", PROVIDERS)
def test_the_bytez_sdk_streams_a_closed_model(served: Served, provider: str) -> None:
    lines = list(served.sdk().model(MODELS[provider], KEYS[provider]).run(HI, {"max_tokens": 100}, stream=True))
    assert "".join(lines) == WHOLE_TEXT
    record = last_usage(served, provider)
    assert (record.prompt_tokens, record.completion_tokens) == served.standins[provider].usage
    assert record.stream and record.complete


@pytest.mark.parametrize("provider", PROVIDERS)
def test_native_answers_carry_the_token_counts_as_open_models_do(served: Served, provider: str) -> None:
    answer = httpx.post(
        f"{served.url}/models/v2/{MODELS[provider]}",
        headers=served.with_key(provider),
        json={"messages": HI, "params": {"max_tokens": 20, "temperature": 0.5, "stop": ["\n\n"]}},
    )
    assert answer.status_code == 200, answer.text
    prompt, completion = served.standins[provider].usage
    assert (answer.headers["X-Prompt-Tokens"], answer.headers["X-Completion-Tokens"]) == (str(prompt), str(completion))
    events = httpx.post(
        f"{served.url}/models/v2/{MODELS[provider]}",
        headers={**served.with_key(provider), "Accept": "text/event-stream"},
        json={"messages": HI, "stream": True},
    ).text
    assert json.dumps({"usage": {"prompt_tokens": prompt, "completion_tokens": completion}})[1:-1] in events
    assert events.endswith("data: [DONE]\n\n")


def test_provider_models_never_create_wake_or_count_a_cluster(served: Served) -> None:
    for provider in PROVIDERS:
        served.sdk().model(MODELS[provider], KEYS[provider]).run(HI)
    assert served.kube.writes == []
    assert served.gateway.clusters.in_namespace(TENANT) == []
    assert "openai/gpt-4o-mini" not in served.gateway.metrics.render().decode()


# --- the OpenAI client -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
def test_openai_chat_completions_reach_every_provider(served: Served, provider: str) -> None:
    client = served.openai(provider)
    answer = client.chat.completions.create(model=MODELS[provider], messages=HI, max_tokens=50)  # type: ignore[arg-type]
    assert answer.choices[0].message.content == WHOLE_TEXT
    assert answer.choices[0].finish_reason == "stop"
    assert answer.usage is not None
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == served.standins[provider].usage
    chunks = list(
        client.chat.completions.create(
            model=MODELS[provider],
            messages=HI,  # type: ignore[arg-type]
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == WHOLE_TEXT
    assert chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == served.standins[provider].usage


@pytest.mark.parametrize("provider", PROVIDERS)
def test_openai_responses_reach_every_provider(served: Served, provider: str) -> None:
    client = served.openai(provider)
    answer = client.responses.create(model=MODELS[provider], input="hi", instructions="Be brief.", max_output_tokens=50)
    assert answer.output_text == WHOLE_TEXT
    assert answer.status == "completed"
    assert answer.usage is not None
    assert (answer.usage.input_tokens, answer.usage.output_tokens) == served.standins[provider].usage
    events = list(client.responses.create(model=MODELS[provider], input=HI, stream=True))  # type: ignore[arg-type]
    deltas = [event.delta for event in events if event.type == "response.output_text.delta"]
    assert deltas == list(TEXT)
    assert events[0].type == "response.created"
    assert events[-1].type == "response.completed"
    final: Any = events[-1]
    assert final.response.output_text == WHOLE_TEXT
    assert final.response.usage.output_tokens == served.standins[provider].usage[1]


def test_the_system_prompt_goes_where_each_provider_takes_it(served: Served) -> None:
    messages = [{"role": "system", "content": "Be brief."}, *HI]
    for provider in PROVIDERS:
        served.sdk().model(MODELS[provider], KEYS[provider]).run(messages)
    assert served.standins["anthropic"].requests[-1].body["system"] == "Be brief."
    assert served.standins["google"].requests[-1].body["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert served.standins["openai"].requests[-1].body["messages"][0] == {"role": "system", "content": "Be brief."}


# --- errors ------------------------------------------------------------------------------------------------------

ERROR_CASES = [
    # (model name, wrong key, native status, Retry-After)
    ("bad-key", True, 401, None),
    ("rate-limited", False, 429, str(RETRY_AFTER_S)),
    ("overloaded", False, 503, "5"),
    ("broken", False, 502, None),
    ("hang", False, 504, None),
]


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize(("model", "wrong_key", "status", "retry_after"), ERROR_CASES)
def test_provider_errors_land_on_their_status_in_each_route_familys_shape(
    served: Served, provider: str, model: str, wrong_key: bool, status: int, retry_after: str | None
) -> None:
    key = masked(KEYS[provider]) + "-wrong" if wrong_key else KEYS[provider]
    name = MODELS[provider] if wrong_key else f"{provider}/{model}"
    native = httpx.post(
        f"{served.url}/models/v2/{name}",
        headers={**served.headers, "Provider-Key": key},
        json={"messages": HI},
        timeout=10,
    )
    assert native.status_code == status, native.text
    assert set(native.json()) == {"error", "output"}
    assert native.json()["output"] is None
    assert native.json()["error"].startswith(f"{provider}")
    assert native.headers.get("Retry-After") == retry_after
    no_key_in(native.text)
    with pytest.raises(openai.APIStatusError) as caught:
        served.openai(provider, key).chat.completions.create(model=name, messages=HI)  # type: ignore[arg-type]
    assert caught.value.status_code == status
    assert isinstance(caught.value.body, dict)
    assert set(caught.value.body) >= {"message", "type"}
    no_key_in(str(caught.value.body))
    assert caught.value.response.headers.get("Retry-After") == retry_after


@pytest.mark.parametrize("provider", PROVIDERS)
def test_an_error_after_the_200_ends_each_route_familys_stream_in_its_way(served: Served, provider: str) -> None:
    name = f"{provider}/fails-midway"
    lines = list(served.sdk().model(name, KEYS[provider]).run(HI, stream=True))
    assert lines[0] == TEXT[0]
    assert lines[-1].startswith("[error] ")
    with pytest.raises(openai.APIError):
        list(served.openai(provider).chat.completions.create(model=name, messages=HI, stream=True))  # type: ignore[arg-type]
    events = list(served.openai(provider).responses.create(model=name, input="hi", stream=True))
    assert [event.type for event in events][-2:] == ["error", "response.failed"]
    record = last_usage(served, provider)
    assert not record.complete
    assert record.status >= 500


def test_a_stream_that_fails_keeps_the_counts_it_had(served: Served) -> None:
    list(served.sdk().model("anthropic/fails-midway", KEYS["anthropic"]).run(HI, stream=True))
    record = last_usage(served, "anthropic")
    assert (record.prompt_tokens, record.complete, record.status) == (served.standins["anthropic"].usage[0], False, 503)


# --- bad input: nothing goes upstream ----------------------------------------------------------------------------

BAD = [
    ({}, {"messages": HI}, 400, "Provider-Key"),
    ({"Provider-Key": ""}, {"messages": HI}, 400, "Provider-Key"),
    (
        {"provider-key": KEYS["openai"]},
        {"messages": [{"role": "user", "content": [{"type": "audio", "url": "https://x/a.wav"}]}]},
        422,
        "audio",
    ),
    ({"PROVIDER-KEY": KEYS["openai"]}, {"messages": HI, "params": {"num_beams": 4}}, 422, "num_beams"),
    ({"Provider-Key": KEYS["openai"]}, {"messages": HI, "params": {"temperature": 9}}, 422, "temperature"),
    ({"Provider-Key": KEYS["openai"]}, {"messages": []}, 422, "messages"),
]


@pytest.mark.parametrize(("headers", "body", "status", "named"), BAD)
def test_bad_input_is_refused_before_anything_goes_upstream(
    served: Served, headers: dict[str, str], body: dict[str, Any], status: int, named: str
) -> None:
    before = len(served.standins["openai"].requests)
    answer = httpx.post(f"{served.url}/models/v2/openai/gpt-4o-mini", headers={**served.headers, **headers}, json=body)
    assert answer.status_code == status
    assert answer.json()["output"] is None
    assert named in answer.json()["error"]
    assert len(served.standins["openai"].requests) == before


def test_openai_routes_refuse_a_missing_key_in_their_shape(served: Served) -> None:
    before = len(served.standins["mistral"].requests)
    answer = httpx.post(
        f"{served.url}/models/v2/openai/v1/chat/completions",
        headers=served.headers,
        json={"model": MODELS["mistral"], "messages": HI},
    )
    assert answer.status_code == 400
    assert "Provider-Key" in answer.json()["error"]["message"]
    completion = httpx.post(
        f"{served.url}/models/v2/openai/v1/completions",
        headers=served.with_key("mistral"),
        json={"model": MODELS["mistral"], "prompt": "hi"},
    )
    assert completion.status_code == 400
    assert len(served.standins["mistral"].requests) == before


def test_gemini_takes_no_image_urls_but_inline_images(served: Served) -> None:
    before = len(served.standins["google"].requests)
    by_url = {
        "role": "user",
        "content": [{"type": "text", "text": "what is it"}, {"type": "image", "url": "https://example.com/cat.png"}],
    }
    answer = httpx.post(
        f"{served.url}/models/v2/{MODELS['google']}", headers=served.with_key("google"), json={"messages": [by_url]}
    )
    assert answer.status_code == 422
    assert "base64" in answer.json()["error"]
    assert len(served.standins["google"].requests) == before
    png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGD4DwABBAEAwS2OUAAAAABJRU5ErkJggg=="
    inline = {"role": "user", "content": [{"type": "image", "base64": png}]}
    answer = httpx.post(
        f"{served.url}/models/v2/{MODELS['google']}", headers=served.with_key("google"), json={"messages": [inline]}
    )
    assert answer.status_code == 200, answer.text
    part = served.standins["google"].requests[-1].body["contents"][0]["parts"][0]
    assert part == {"inlineData": {"mimeType": "image/png", "data": png}}


# --- serving -----------------------------------------------------------------------------------------------------


def test_openai_streams_send_keep_alive_comments_while_the_provider_is_silent(served: Served) -> None:
    with httpx.stream(
        "POST",
        f"{served.url}/models/v2/openai/v1/chat/completions",
        headers=served.with_key("cohere"),
        json={"model": "cohere/silent", "messages": HI, "stream": True},
    ) as answer:
        raw = b"".join(answer.iter_raw())
    assert b": keep-alive\n\n" in raw
    assert raw.endswith(b"data: [DONE]\n\n")


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_client_that_leaves_cancels_the_upstream_call(served: Served, provider: str) -> None:
    standin = served.standins[provider]
    before = standin.disconnects
    with httpx.stream(
        "POST",
        f"{served.url}/models/v2/{provider}/endless",
        headers=served.with_key(provider),
        json={"messages": HI, "stream": True},
    ) as answer:
        assert answer.status_code == 200
        next(answer.iter_raw())
    eventually(lambda: standin.disconnects > before, timeout=10, what=f"{provider}'s stand-in to see the disconnect")


def test_metrics_count_each_provider_by_status_class(served: Served) -> None:
    served.sdk().model(MODELS["cohere"], KEYS["cohere"]).run(HI)
    text = served.gateway.metrics.render().decode()
    assert 'modelcluster_gateway_provider_requests_total{code="2xx",provider="cohere"}' in text
    assert 'modelcluster_gateway_provider_first_byte_seconds_count{provider="cohere"}' in text
    assert 'modelcluster_gateway_provider_tokens_total{direction="prompt",provider="cohere"}' in text
