"""The vLLM path for text-generation and chat: vLLM's async engine (continuous batching) behind the same contract.

Used when vLLM is installed and the device is a GPU (``ENGINE=auto``), or when ``ENGINE=vllm`` is forced.
"""

from __future__ import annotations

import importlib
import importlib.util
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from modelcluster.api.errors import InputError
from modelcluster.api.inputs import Payload
from modelcluster.api.streaming import TokenUsage
from modelcluster.runtime.generation_params import VLLM, accepted_names, check_generation_params
from modelcluster.runtime.tasks.base import Handler, LoadContext

# generate() names -> vLLM SamplingParams names
VLLM_PARAM_NAMES = {
    "max_new_tokens": "max_tokens",
    "max_tokens": "max_tokens",
    "min_new_tokens": "min_tokens",
    "min_tokens": "min_tokens",
    "temperature": "temperature",
    "top_p": "top_p",
    "top_k": "top_k",
    "min_p": "min_p",
    "repetition_penalty": "repetition_penalty",
    "presence_penalty": "presence_penalty",
    "frequency_penalty": "frequency_penalty",
    "seed": "seed",
    "stop": "stop",
    "do_sample": "do_sample",
}


#: The tasks the vLLM engine serves (the generation loaders try it first).
VLLM_TASKS = frozenset({"text-generation", "chat"})


def tensor_parallel_kwargs(gpu_count: int) -> dict[str, Any]:
    """vLLM engine arguments that shard the model over ``gpu_count`` GPUs of the pod."""
    return {"tensor_parallel_size": gpu_count} if gpu_count > 1 else {}


def vllm_installed() -> bool:
    return importlib.util.find_spec("vllm") is not None


def choose_engine(requested: str, vllm_present: bool, device: str) -> str:
    """``transformers`` or ``vllm`` for a generation task; raises when ``vllm`` is forced but cannot run."""
    on_gpu = device.startswith("cuda")
    if requested == "transformers":
        return "transformers"
    if requested == "vllm":
        if not vllm_present:
            raise RuntimeError("ENGINE=vllm but vllm is not installed")
        if not on_gpu:
            raise RuntimeError("ENGINE=vllm needs a CUDA device")
        return "vllm"
    return "vllm" if vllm_present and on_gpu else "transformers"


def use_vllm(requested: str, device: str) -> bool:
    return choose_engine(requested, vllm_installed(), device) == "vllm"


def to_sampling_params(params: dict[str, Any], default_max_tokens: int = 256) -> dict[str, Any]:
    """Map generate()-style params onto vLLM's SamplingParams; ``do_sample: false`` means greedy, whatever
    ``temperature`` says (as in ``generate()``)."""
    mapped: dict[str, Any] = {}
    for key, value in params.items():
        target = VLLM_PARAM_NAMES.get(key)
        if target is None:
            raise InputError(
                f"unknown param for the vLLM engine: {key} (accepted: {', '.join(sorted(VLLM_PARAM_NAMES))})"
            )
        if target != "do_sample":
            mapped[target] = value
    if params.get("do_sample") is False:
        mapped["temperature"] = 0.0
    mapped.setdefault("max_tokens", default_max_tokens)
    return mapped


def output_usage(output: Any) -> TokenUsage:
    """The token counts of a (cumulative) vLLM ``RequestOutput``: its prompt ids and its first completion's ids."""
    return TokenUsage(
        prompt_tokens=len(output.prompt_token_ids or ()),
        completion_tokens=len(output.outputs[0].token_ids) if output.outputs else 0,
    )


class VllmHandler(Handler):
    """Generation on vLLM's AsyncLLM; requests run concurrently and the engine batches them continuously."""

    concurrent = True

    def __init__(self, task: str, engine: Any, tokenizer: Any, sampling_params_class: Any) -> None:
        self.task = task
        self.params = accepted_names(VLLM) | ({"return_full_text"} if task == "text-generation" else set())
        self.engine = engine
        self.tokenizer = tokenizer
        self.sampling_params_class = sampling_params_class

    def check_params(self, params: dict[str, Any]) -> dict[str, Any]:
        """The generation allowlist for vLLM, with its bounds; ``return_full_text`` for text-generation."""
        own = self.params - accepted_names(VLLM)
        checked = check_generation_params(
            params, self.limits, engine=VLLM, what=f"param(s) for {self.task}", passthrough=own
        )
        if not isinstance(checked.get("return_full_text", True), bool):
            raise InputError("return_full_text must be true or false")
        return checked

    def prepare(self, payload: Payload, media: list[bytes]) -> Any:
        if self.task == "chat":
            messages = [
                {
                    "role": m.role,
                    "content": m.content if isinstance(m.content, str) else "".join(b.text or "" for b in m.content),
                }
                for m in payload.messages or []
            ]
            prompt: str = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
            return prompt
        if not isinstance(payload.text, str) or not payload.text:
            raise InputError(f"{self.task} takes one non-empty string in `text`")
        return payload.text

    async def astream(
        self, item: Any, params: dict[str, Any], should_stop: Callable[[], bool]
    ) -> AsyncIterator[str | TokenUsage]:
        sampling = self.sampling_params_class(
            **to_sampling_params(
                {k: v for k, v in params.items() if k != "return_full_text"}, min(256, self.limits.max_new_tokens)
            )
        )
        request_id = uuid.uuid4().hex
        sent = 0
        last: Any = None
        try:
            async for output in self.engine.generate(item, sampling, request_id):
                last = output
                text: str = output.outputs[0].text
                if len(text) > sent:
                    yield text[sent:]
                    sent = len(text)
                if should_stop():
                    return
        finally:
            if should_stop():
                await self.engine.abort(request_id)
        if last is not None:
            yield output_usage(last)

    def finish(self, item: Any, params: dict[str, Any], text: str) -> Any:
        if self.task == "chat":
            return {"role": "assistant", "content": text}
        return f"{item}{text}" if params.get("return_full_text", True) else text


def load_vllm_handler(ctx: LoadContext) -> Handler:
    vllm = importlib.import_module("vllm")
    engine_args = vllm.AsyncEngineArgs(
        model=str(ctx.model_dir),
        dtype=ctx.dtype,
        trust_remote_code=ctx.trust_remote_code,
        **ctx.loading_kwargs,
    )
    engine = vllm.AsyncLLMEngine.from_engine_args(engine_args)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(ctx.model_dir), trust_remote_code=ctx.trust_remote_code)
    return VllmHandler(ctx.task, engine, tokenizer, vllm.SamplingParams)
