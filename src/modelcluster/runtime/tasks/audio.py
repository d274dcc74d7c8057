"""Audio tasks: classification and speech recognition (audio in), text-to-speech/audio (WAV out)."""

from __future__ import annotations

from importlib import import_module
from typing import Any

from modelcluster.api.errors import InputError
from modelcluster.api.inputs import Payload
from modelcluster.runtime import media
from modelcluster.runtime.generation_params import check_generation_params
from modelcluster.runtime.limits import Limits
from modelcluster.runtime.tasks.base import Handler, LoadContext, MediaOutput, StopCheck, never_stop
from modelcluster.runtime.tasks.common import build_pipeline, jsonable, per_input, stopping_criteria


def check_generate_params(params: dict[str, Any], keys: tuple[str, ...], limits: Limits) -> dict[str, Any]:
    """Params that ``generate()`` receives (``generate_kwargs``...) under the generation allowlist and bounds."""
    checked = dict(params)
    for key in keys:
        if key in checked:
            if not isinstance(checked[key], dict):
                raise InputError(f"{key} must be an object")
            checked[key] = check_generation_params(checked[key], limits, what=f"{key} key(s)")
    return checked


def with_stop(params: dict[str, Any], should_stop: StopCheck) -> dict[str, Any]:
    """``params`` whose ``generate_kwargs`` also stop ``generate()`` once ``should_stop()``."""
    generate_kwargs = {**params.get("generate_kwargs", {}), "stopping_criteria": stopping_criteria(should_stop)}
    return {**params, "generate_kwargs": generate_kwargs}


class AudioInputHandler(Handler):
    """Audio decoded to mono float32 at the model's sampling rate; batched through the pipeline."""

    def __init__(self, task: str, pipe: Any, params: frozenset[str]) -> None:
        self.task = task
        self.pipe = pipe
        self.params = params
        self.sampling_rate = int(getattr(pipe.feature_extractor, "sampling_rate", 16000))

    def prepare(self, payload: Payload, media_blobs: list[bytes]) -> Any:
        samples = media.load_audio(
            media_blobs[0], self.sampling_rate, self.limits.max_audio_seconds, self.limits.max_audio_samples
        )
        return {"raw": samples, "sampling_rate": self.sampling_rate}

    def run_batch(self, items: list[Any], params: dict[str, Any]) -> list[Any]:
        return self.run_until(items, params, never_stop)

    def run_until(self, items: list[Any], params: dict[str, Any], should_stop: StopCheck) -> list[Any]:
        if str(getattr(self.pipe, "type", "")).startswith("seq2seq"):  # speech recognition by generate()
            params = with_stop(params, should_stop)
        results = per_input(self.pipe(list(items), batch_size=len(items), **params), len(items))
        return [self.shape(jsonable(result)) for result in results]

    def shape(self, result: Any) -> Any:
        return result


class SpeechRecognitionHandler(AudioInputHandler):
    def check_params(self, params: dict[str, Any]) -> dict[str, Any]:
        return check_generate_params(super().check_params(params), ("generate_kwargs",), self.limits)

    def shape(self, result: Any) -> Any:
        return result["text"] if isinstance(result, dict) else result


class TextToAudioHandler(Handler):
    """Text in, a WAV file out (base64 in JSON, raw bytes with ``"json": false``)."""

    def __init__(self, task: str, pipe: Any) -> None:
        self.task = task
        self.pipe = pipe
        self.params = frozenset({"forward_params", "generate_kwargs"})

    @property
    def generates(self) -> bool:
        """Whether the model speaks by ``generate()`` (then ``forward_params`` are generate() arguments too)."""
        return bool(getattr(self.pipe.model, "can_generate", lambda: False)())

    def check_params(self, params: dict[str, Any]) -> dict[str, Any]:
        keys = ("generate_kwargs", "forward_params") if self.generates else ("generate_kwargs",)
        return check_generate_params(super().check_params(params), keys, self.limits)

    def prepare(self, payload: Payload, media_blobs: list[bytes]) -> Any:
        if not isinstance(payload.text, str) or not payload.text.strip():
            raise InputError(f"{self.task} takes one non-empty string in `text`")
        return payload.text

    def run_batch(self, items: list[Any], params: dict[str, Any]) -> list[Any]:
        return self.run_until(items, params, never_stop)

    def run_until(self, items: list[Any], params: dict[str, Any], should_stop: StopCheck) -> list[Any]:
        if self.generates:
            params = with_stop(params, should_stop)
        outputs = []
        for text in items:
            result = self.pipe(text, **params)
            outputs.append(MediaOutput(media.encode_wav(result["audio"], int(result["sampling_rate"])), "audio/wav"))
        return outputs


def load_audio_classification(ctx: LoadContext) -> Handler:
    return AudioInputHandler(
        ctx.task, build_pipeline(ctx, "audio-classification"), frozenset({"top_k", "function_to_apply"})
    )


def load_speech_recognition(ctx: LoadContext) -> Handler:
    pipe = build_pipeline(ctx, "automatic-speech-recognition")
    params = frozenset({"return_timestamps", "generate_kwargs", "chunk_length_s", "stride_length_s"})
    return SpeechRecognitionHandler(ctx.task, pipe, params)


def text_to_audio_pipeline_class() -> type:
    """The text-to-audio pipeline, handing its preprocessing a ``BatchFeature``.

    transformers 5.17 ends ``TextToAudioPipeline.preprocess`` with ``output.to(dtype=...)``, which the
    ``BatchEncoding`` of a tokenizer (VITS, MusicGen, Bark) refuses with a ``TypeError``
    (huggingface/transformers#48683, fixed upstream by #48505). A ``BatchFeature`` takes the dtype and
    casts only floating-point tensors, so token ids stay integers.
    """
    from transformers import BatchFeature

    base: Any = import_module("transformers.pipelines.text_to_audio").TextToAudioPipeline

    class FeatureOutputs:
        """Calls a tokenizer or processor and hands back its output as a ``BatchFeature``."""

        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            output = self.inner(*args, **kwargs)
            return output if isinstance(output, BatchFeature) else BatchFeature(dict(output))

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

    class BatchFeatureTextToAudioPipeline(base):  # type: ignore[misc]
        tokenizer: Any
        processor: Any

        def preprocess(self, text: Any, **kwargs: Any) -> Any:
            tokenizer, processor = self.tokenizer, self.processor
            self.tokenizer = None if tokenizer is None else FeatureOutputs(tokenizer)
            self.processor = None if processor is None else FeatureOutputs(processor)
            try:
                return super().preprocess(text, **kwargs)
            finally:
                self.tokenizer, self.processor = tokenizer, processor

    return BatchFeatureTextToAudioPipeline


def load_text_to_audio(ctx: LoadContext) -> Handler:
    pipe = build_pipeline(ctx, "text-to-audio", pipeline_class=text_to_audio_pipeline_class())
    return TextToAudioHandler(ctx.task, pipe)
