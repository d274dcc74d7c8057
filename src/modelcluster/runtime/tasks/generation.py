"""Text generation on the transformers Auto classes: causal LMs (text-generation, chat) and
sequence-to-sequence models (text2text-generation, summarization, translation).

Every generation runs as a stream of text deltas ending with its token usage; a request that does not stream gets
the deltas joined.
Generation stops when the request's ``should_stop`` turns true (client gone, timeout).
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

from modelcluster.api.errors import InputError
from modelcluster.api.inputs import Payload
from modelcluster.api.streaming import TokenUsage
from modelcluster.runtime.generation_params import accepted_names, check_generation_params
from modelcluster.runtime.tasks.base import Handler, LoadContext
from modelcluster.runtime.tasks.common import stopping_criteria


class TokenCounter:
    """Hands generate()'s token ids on to a streamer and counts the generated ones.

    generate() first puts the prompt (for encoder-decoder models, the decoder's start), then each new token.
    """

    def __init__(self, streamer: Any) -> None:
        self.streamer = streamer
        self.generated = 0
        self._prompt_seen = False

    def put(self, value: Any) -> None:
        if self._prompt_seen:
            self.generated += int(value.shape[-1])
        else:
            self._prompt_seen = True
        self.streamer.put(value)

    def end(self) -> None:
        self.streamer.end()


class GenerationHandler(Handler):
    def __init__(self, task: str, model: Any, tokenizer: Any, device: str) -> None:
        self.task = task
        self.model = model
        self.tokenizer = tokenizer
        self.device = device
        self.params = accepted_names()

    def check_params(self, params: dict[str, Any]) -> dict[str, Any]:
        """The generation allowlist with its bounds (``max_new_tokens`` up to ``MAX_NEW_TOKENS``...)."""
        own = self.params - accepted_names()
        return check_generation_params(
            params, self.limits, what=f"param(s) for {self.task}", passthrough=own, streaming=True
        )

    def encode(self, item: Any) -> dict[str, Any]:
        raise NotImplementedError

    def stream(self, item: Any, params: dict[str, Any], should_stop: Callable[[], bool]) -> Iterator[str | TokenUsage]:
        import torch
        from transformers import TextIteratorStreamer

        encoded = self.encode(item)
        streamer: Any = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=600)
        counter = TokenCounter(streamer)
        errors: list[BaseException] = []
        kwargs = dict(params)
        kwargs.setdefault("max_new_tokens", min(256, self.limits.max_new_tokens))
        if self.tokenizer.pad_token_id is None and self.tokenizer.eos_token_id is not None:
            kwargs.setdefault("pad_token_id", self.tokenizer.eos_token_id)

        def generate() -> None:
            try:
                with torch.inference_mode():
                    self.model.generate(
                        **encoded,
                        streamer=counter,
                        stopping_criteria=stopping_criteria(should_stop),
                        **kwargs,
                    )
            except Exception as exc:  # noqa: BLE001 - re-raised in the consuming thread below
                errors.append(exc)
                streamer.end()

        thread = threading.Thread(target=generate, name="generate", daemon=True)
        thread.start()
        try:
            for delta in streamer:
                if delta:
                    yield delta
        finally:
            thread.join()
        if errors:
            raise errors[0]
        yield TokenUsage(prompt_tokens=int(encoded["input_ids"].shape[-1]), completion_tokens=counter.generated)

    def finish(self, item: Any, params: dict[str, Any], text: str) -> Any:
        return text


class CausalTextHandler(GenerationHandler):
    params_extra = frozenset({"return_full_text"})

    def __init__(self, task: str, model: Any, tokenizer: Any, device: str) -> None:
        super().__init__(task, model, tokenizer, device)
        self.params = self.params | self.params_extra

    def prepare(self, payload: Payload, media: list[bytes]) -> Any:
        if not isinstance(payload.text, str) or not payload.text:
            raise InputError(f"{self.task} takes one non-empty string in `text`")
        return payload.text

    def check_params(self, params: dict[str, Any]) -> dict[str, Any]:
        checked = super().check_params(params)
        if "return_full_text" in checked and not isinstance(checked["return_full_text"], bool):
            raise InputError("return_full_text must be true or false")
        return checked

    def encode(self, item: Any) -> dict[str, Any]:
        encoded = self.tokenizer(item, return_tensors="pt")
        return {key: value.to(self.device) for key, value in encoded.items()}

    def stream(self, item: Any, params: dict[str, Any], should_stop: Callable[[], bool]) -> Iterator[str | TokenUsage]:
        generate_params = {key: value for key, value in params.items() if key != "return_full_text"}
        return super().stream(item, generate_params, should_stop)

    def finish(self, item: Any, params: dict[str, Any], text: str) -> Any:
        return f"{item}{text}" if params.get("return_full_text", True) else text


class ChatHandler(GenerationHandler):
    def prepare(self, payload: Payload, media: list[bytes]) -> Any:
        messages = []
        for message in payload.messages or []:
            if isinstance(message.content, str):
                content = message.content
            else:
                if any(block.type != "text" for block in message.content):
                    raise InputError("chat takes text only; media blocks need an image/audio/video-text-to-text model")
                content = "".join(block.text or "" for block in message.content)
            messages.append({"role": message.role, "content": content})
        if self.tokenizer.chat_template is None:
            raise InputError("this model has no chat template; use text-generation")
        return messages

    def encode(self, item: Any) -> dict[str, Any]:
        encoded = self.tokenizer.apply_chat_template(
            item, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        return {key: value.to(self.device) for key, value in encoded.items()}

    def finish(self, item: Any, params: dict[str, Any], text: str) -> Any:
        return {"role": "assistant", "content": text}


class Seq2SeqHandler(GenerationHandler):
    def prepare(self, payload: Payload, media: list[bytes]) -> Any:
        if not isinstance(payload.text, str) or not payload.text:
            raise InputError(f"{self.task} takes one non-empty string in `text`")
        return payload.text

    def encode(self, item: Any) -> dict[str, Any]:
        encoded = self.tokenizer(item, return_tensors="pt", truncation=True)
        return {key: value.to(self.device) for key, value in encoded.items()}


def _load(ctx: LoadContext, auto_class: str) -> tuple[Any, Any]:
    transformers: Any = importlib.import_module("transformers")
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(ctx.model_dir), trust_remote_code=ctx.trust_remote_code)
    model = getattr(transformers, auto_class).from_pretrained(
        str(ctx.model_dir), dtype=ctx.torch_dtype(), trust_remote_code=ctx.trust_remote_code, **ctx.loading_kwargs
    )
    if "device_map" not in ctx.loading_kwargs:
        model.to(ctx.device)
    model.eval()
    return model, tokenizer


def _vllm_or_none(ctx: LoadContext) -> Handler | None:
    from modelcluster.runtime import llm_engine

    if llm_engine.use_vllm(ctx.engine, ctx.device):
        return llm_engine.load_vllm_handler(ctx)
    return None


def load_text_generation(ctx: LoadContext) -> Handler:
    engine = _vllm_or_none(ctx)
    if engine is not None:
        return engine
    model, tokenizer = _load(ctx, "AutoModelForCausalLM")
    return CausalTextHandler(ctx.task, model, tokenizer, ctx.device)


def load_chat(ctx: LoadContext) -> Handler:
    engine = _vllm_or_none(ctx)
    if engine is not None:
        return engine
    model, tokenizer = _load(ctx, "AutoModelForCausalLM")
    return ChatHandler(ctx.task, model, tokenizer, ctx.device)


def load_seq2seq(ctx: LoadContext) -> Handler:
    model, tokenizer = _load(ctx, "AutoModelForSeq2SeqLM")
    return Seq2SeqHandler(ctx.task, model, tokenizer, ctx.device)
