"""Audio tasks: classification and speech recognition (audio in), text-to-speech/audio (WAV out)."""

from __future__ import annotations

from typing import Any

from modelcluster.api.inputs import Payload
from modelcluster.runtime import media
from modelcluster.runtime.errors import InputError
from modelcluster.runtime.tasks.base import Handler, LoadContext, MediaOutput
from modelcluster.runtime.tasks.common import build_pipeline, jsonable, per_input


class AudioInputHandler(Handler):
    """Audio decoded to mono float32 at the model's sampling rate; batched through the pipeline."""

    def __init__(self, task: str, pipe: Any, params: frozenset[str]) -> None:
        self.task = task
        self.pipe = pipe
        self.params = params
        self.sampling_rate = int(getattr(pipe.feature_extractor, "sampling_rate", 16000))

    def prepare(self, payload: Payload, media_blobs: list[bytes]) -> Any:
        return {"raw": media.load_audio(media_blobs[0], self.sampling_rate), "sampling_rate": self.sampling_rate}

    def run_batch(self, items: list[Any], params: dict[str, Any]) -> list[Any]:
        results = per_input(self.pipe(list(items), batch_size=len(items), **params), len(items))
        return [self.shape(jsonable(result)) for result in results]

    def shape(self, result: Any) -> Any:
        return result


class SpeechRecognitionHandler(AudioInputHandler):
    def shape(self, result: Any) -> Any:
        return result["text"] if isinstance(result, dict) else result


class TextToAudioHandler(Handler):
    """Text in, a WAV file out (base64 in JSON, raw bytes with ``"json": false``)."""

    def __init__(self, task: str, pipe: Any) -> None:
        self.task = task
        self.pipe = pipe
        self.params = frozenset({"forward_params", "generate_kwargs"})

    def prepare(self, payload: Payload, media_blobs: list[bytes]) -> Any:
        if not isinstance(payload.text, str) or not payload.text.strip():
            raise InputError(f"{self.task} takes one non-empty string in `text`")
        return payload.text

    def run_batch(self, items: list[Any], params: dict[str, Any]) -> list[Any]:
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


def load_text_to_audio(ctx: LoadContext) -> Handler:
    return TextToAudioHandler(ctx.task, build_pipeline(ctx, "text-to-audio"))
