"""The vLLM engine for text-generation and chat.

The mapping of request params onto vLLM's ``SamplingParams`` and the handler around the engine are tested
everywhere. Serving a real model with vLLM needs vLLM installed and a CUDA GPU; where either is missing, those
tests are skipped and say which.
"""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from runtime_support import ServerHandle

from modelcluster.api.errors import InputError
from modelcluster.api.inference import COMPLETION_TOKENS_HEADER, RunRequest
from modelcluster.api.inputs import MESSAGES, TEXT, normalize
from modelcluster.api.streaming import TokenUsage
from modelcluster.devcluster import tiny_models
from modelcluster.runtime.generation_params import VLLM, accepted_names
from modelcluster.runtime.limits import Limits
from modelcluster.runtime.llm_engine import VLLM_PARAM_NAMES, VllmHandler, to_sampling_params

NOT_INSTALLED = "vLLM is not installed here (the llm model image installs it; the runtime extra does not)"
SAMPLE_VALUES: dict[str, Any] = {
    "max_new_tokens": 7,
    "max_tokens": 7,
    "min_new_tokens": 2,
    "min_tokens": 2,
    "temperature": 0.5,
    "top_p": 0.9,
    "top_k": 5,
    "min_p": 0.1,
    "repetition_penalty": 1.1,
    "presence_penalty": 0.5,
    "frequency_penalty": 0.5,
    "seed": 3,
    "stop": ["\n"],
    "do_sample": True,
}


def test_every_param_accepted_for_vllm_has_a_sampling_param() -> None:
    assert accepted_names(VLLM) <= set(VLLM_PARAM_NAMES)
    for name in sorted(accepted_names(VLLM)):
        mapped = to_sampling_params({name: SAMPLE_VALUES[name]})
        assert set(mapped) <= {*VLLM_PARAM_NAMES.values()} - {"do_sample"}, name


def test_param_names_map_onto_sampling_params() -> None:
    params = {name: SAMPLE_VALUES[name] for name in ("max_new_tokens", "min_new_tokens", "top_k", "stop", "seed")}
    assert to_sampling_params(params) == {"max_tokens": 7, "min_tokens": 2, "top_k": 5, "stop": ["\n"], "seed": 3}
    assert to_sampling_params({"max_tokens": 7, "min_tokens": 2}) == {"max_tokens": 7, "min_tokens": 2}
    assert to_sampling_params({}, default_max_tokens=32) == {"max_tokens": 32}
    with pytest.raises(InputError, match="num_beams"):
        to_sampling_params({"num_beams": 2})


def test_do_sample_false_is_greedy_whatever_the_temperature() -> None:
    greedy = {"max_tokens": 256, "temperature": 0.0}
    assert to_sampling_params({"do_sample": False, "temperature": 0.7}) == greedy
    assert to_sampling_params({"temperature": 0.7, "do_sample": False}) == greedy
    assert to_sampling_params({"do_sample": True, "temperature": 0.7}) == {"max_tokens": 256, "temperature": 0.7}
    assert to_sampling_params({"do_sample": True}) == {"max_tokens": 256}


class RecordingEngine:
    """vLLM's AsyncLLM as the handler uses it, answering one fixed completion and recording the sampling params."""

    def __init__(self) -> None:
        self.sampling: list[Any] = []

    async def generate(self, prompt: str, sampling: Any, request_id: str) -> AsyncIterator[Any]:
        from types import SimpleNamespace

        self.sampling.append(sampling)
        yield SimpleNamespace(prompt_token_ids=[1, 2], outputs=[SimpleNamespace(text=" there", token_ids=[3, 4])])

    async def abort(self, request_id: str) -> None:
        raise AssertionError("nothing to abort")


def handler(task: str, engine: Any = None, tokenizer: Any = None) -> VllmHandler:
    made = VllmHandler(task, engine, tokenizer, sampling_params_class=lambda **kwargs: kwargs)
    made.limits = Limits(max_new_tokens=100)
    return made


async def test_the_engine_gets_the_mapped_sampling_params() -> None:
    engine = RecordingEngine()
    text_generation = handler("text-generation", engine)
    params = text_generation.check_params({"max_tokens": 5, "do_sample": False, "return_full_text": False})
    items = [item async for item in text_generation.astream("hi", params, lambda: False)]
    assert items == [" there", TokenUsage(2, 2)]
    assert text_generation.finish("hi", params, " there") == " there"
    assert text_generation.finish("hi", {}, " there") == "hi there"
    assert [item async for item in text_generation.astream("hi", {}, lambda: False)][-1] == TokenUsage(2, 2)
    assert engine.sampling == [{"max_tokens": 5, "temperature": 0.0}, {"max_tokens": 100}]  # the limit, under 256


def test_params_are_checked_against_the_limits() -> None:
    text_generation = handler("text-generation")
    with pytest.raises(InputError, match="max_new_tokens"):
        text_generation.check_params({"max_new_tokens": 101})
    with pytest.raises(InputError, match="num_beams"):
        text_generation.check_params({"num_beams": 2})
    with pytest.raises(InputError, match="return_full_text"):
        text_generation.check_params({"return_full_text": "yes"})
    with pytest.raises(InputError, match="return_full_text"):
        handler("chat").check_params({"return_full_text": False})


def test_chat_prompt_is_rendered_with_the_chat_template() -> None:
    tokenizer = tiny_models.bpe_tokenizer(chat_template=tiny_models.CHAT_TEMPLATE)
    chat = handler("chat", tokenizer=tokenizer)
    body = {
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hello "}, {"type": "text", "text": "Bob"}]}]
    }
    prompt = chat.prepare(normalize(RunRequest.model_validate(body), "chat", MESSAGES), [])
    assert prompt == "user: Hello Bob\nassistant: "
    assert chat.finish(prompt, {}, "Hi") == {"role": "assistant", "content": "Hi"}
    text_generation = handler("text-generation")
    with pytest.raises(InputError, match="non-empty"):
        text_generation.prepare(normalize(RunRequest.model_validate({"text": ""}), "text-generation", TEXT), [])


# --- a real model on vLLM -------------------------------------------------------------------------------------------


def vllm_unavailable() -> str | None:
    """Why vLLM cannot serve here, or None."""
    if importlib.util.find_spec("vllm") is None:
        return NOT_INSTALLED
    import torch

    if not torch.cuda.is_available():
        return "no CUDA GPU: vLLM serves on CUDA devices only"
    return None


@pytest.fixture(scope="module")
def vllm_served(
    serve: Callable[..., ServerHandle], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, ServerHandle]:
    reason = vllm_unavailable()
    if reason is not None:
        pytest.skip(f"vLLM serving not tested: {reason}")
    directory: Path = tmp_path_factory.mktemp("tiny-chat")
    tiny_models.write_tiny_chat(directory)
    engine_args = {"gpu_memory_utilization": 0.2, "enforce_eager": True, "max_model_len": 512}
    return {
        task: serve(directory, task, engine="vllm", device="cuda", model_loading_kwargs_json=engine_args)
        for task in ("text-generation", "chat")
    }


def test_vllm_sampling_params_take_every_mapped_name() -> None:
    if importlib.util.find_spec("vllm") is None:
        pytest.skip(NOT_INSTALLED)
    from vllm import SamplingParams

    mapped = to_sampling_params(
        {name: value for name, value in SAMPLE_VALUES.items() if name not in {"max_tokens", "min_tokens"}}
    )
    sampling = SamplingParams(**mapped)
    for name, value in mapped.items():
        assert getattr(sampling, name) == value, name


def test_vllm_text_generation_plain_and_streamed(vllm_served: dict[str, ServerHandle]) -> None:
    params = {"max_new_tokens": 6, "min_new_tokens": 6, "do_sample": False, "return_full_text": False}
    with vllm_served["text-generation"].client() as client:
        response = client.post("/run", json={"text": "the cat", "params": params})
        assert response.status_code == 200, response.text
        assert int(response.headers[COMPLETION_TOKENS_HEADER]) == 6
        plain = response.json()["output"]
        assert isinstance(plain, str)
        with client.stream("POST", "/run", json={"text": "the cat", "params": params, "stream": True}) as streamed:
            assert streamed.status_code == 200
            assert "".join(streamed.iter_text()) == plain
        full = client.post("/run", json={"text": "the cat", "params": {**params, "return_full_text": True}})
        assert full.json()["output"] == "the cat" + plain


def test_vllm_chat_answers_as_the_assistant(vllm_served: dict[str, ServerHandle]) -> None:
    messages = [{"role": "user", "content": "Hello, who are you?"}]
    with vllm_served["chat"].client() as client:
        response = client.post("/run", json={"messages": messages, "params": {"max_tokens": 4, "min_tokens": 4}})
        assert response.status_code == 200, response.text
        assert int(response.headers[COMPLETION_TOKENS_HEADER]) == 4
        output = response.json()["output"]
        assert set(output) == {"role", "content"}
        assert output["role"] == "assistant"
        assert isinstance(output["content"], str)
