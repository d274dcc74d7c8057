"""image-, audio- and video-text-to-text: chat messages whose content blocks carry media by url or base64.

The model's processor renders the conversation with its chat template and prepares the media; ``generate()``
answers. (transformers' any-to-any pipeline is not used: it refuses to load an audio model without librosa, which
the runtime does not need otherwise.)
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from modelcluster.api.errors import InputError
from modelcluster.api.inputs import Payload
from modelcluster.runtime import media
from modelcluster.runtime.generation_params import check_generation_params
from modelcluster.runtime.tasks.base import Handler, LoadContext, MediaRef, StopCheck, never_stop
from modelcluster.runtime.tasks.common import stopping_criteria

VIDEO_FRAMES = 16  # frames sampled from each video block


class MediaChatHandler(Handler):
    """Generates the assistant's answer to the whole conversation, its media decoded into the content blocks."""

    params = frozenset({"max_new_tokens", "generate_kwargs"})

    def __init__(self, task: str, model: Any, processor: Any, device: str) -> None:
        self.task = task
        self.model = model
        self.processor = processor
        self.device = device
        extractor = getattr(processor, "feature_extractor", None)
        self.sampling_rate = int(getattr(extractor, "sampling_rate", 16000))

    def check_params(self, params: dict[str, Any]) -> dict[str, Any]:
        """``max_new_tokens`` and ``generate_kwargs`` under the generation allowlist and its bounds."""
        checked = super().check_params(params)
        generate_kwargs = checked.get("generate_kwargs", {})
        if not isinstance(generate_kwargs, dict):
            raise InputError("generate_kwargs must be an object")
        if "max_new_tokens" in checked:
            generate_kwargs = {**generate_kwargs, "max_new_tokens": checked.pop("max_new_tokens")}
        if generate_kwargs:
            checked["generate_kwargs"] = check_generation_params(
                generate_kwargs, self.limits, what="generate_kwargs key(s)"
            )
        return checked

    def media_refs(self, payload: Payload) -> list[MediaRef]:
        refs = []
        for message in payload.messages or []:
            if isinstance(message.content, list):
                for block in message.content:
                    if block.type == "text":
                        continue
                    if (block.url is None) == (block.base64 is None):
                        raise InputError(f"a {block.type} block needs exactly one of `url` or `base64`")
                    refs.append(MediaRef(url=block.url, base64=block.base64))
        return refs

    def prepare(self, payload: Payload, media_blobs: list[bytes]) -> Any:
        blobs = iter(media_blobs)
        conversation: list[dict[str, Any]] = []
        for message in payload.messages or []:
            if isinstance(message.content, str):
                conversation.append({"role": message.role, "content": [{"type": "text", "text": message.content}]})
                continue
            blocks: list[dict[str, Any]] = []
            for block in message.content:
                if block.type == "text":
                    blocks.append({"type": "text", "text": block.text or ""})
                elif block.type == "image":
                    blocks.append(
                        {"type": "image", "image": media.load_image(next(blobs), self.limits.max_image_pixels)}
                    )
                elif block.type == "audio":
                    audio = media.load_audio(
                        next(blobs), self.sampling_rate, self.limits.max_audio_seconds, self.limits.max_audio_samples
                    )
                    blocks.append({"type": "audio", "audio": audio})
                else:
                    frames = media.load_video_frames(
                        next(blobs), VIDEO_FRAMES, self.limits.max_video_frames, self.limits.max_image_pixels
                    )
                    blocks.append({"type": "video", "video": frames})
            conversation.append({"role": message.role, "content": blocks})
        return conversation

    def run_batch(self, items: list[Any], params: dict[str, Any]) -> list[Any]:
        return self.run_until(items, params, never_stop)

    def run_until(self, items: list[Any], params: dict[str, Any], should_stop: StopCheck) -> list[Any]:
        generate_kwargs = {
            "max_new_tokens": min(256, self.limits.max_new_tokens),
            **params.get("generate_kwargs", {}),
            "stopping_criteria": stopping_criteria(should_stop),
        }
        return [{"role": "assistant", "content": self.answer(conversation, generate_kwargs)} for conversation in items]

    def answer(self, conversation: list[dict[str, Any]], generate_kwargs: dict[str, Any]) -> str:
        """The generated text of one conversation, without its prompt."""
        import torch

        encoded = self.processor.apply_chat_template(
            conversation, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
        ).to(self.device, dtype=self.model.dtype)  # media features in the model's dtype, token ids stay integers
        with torch.inference_mode():
            generated = self.model.generate(**encoded, **generate_kwargs)
        if not self.model.config.is_encoder_decoder:
            generated = generated[:, encoded["input_ids"].shape[1] :]
        text: str = self.processor.batch_decode(generated, skip_special_tokens=True)[0]
        return text


def load_media_chat(ctx: LoadContext) -> Handler:
    transformers: Any = import_module("transformers")
    auto_class = "AutoModelForImageTextToText" if ctx.task == "image-text-to-text" else "AutoModelForMultimodalLM"
    processor = transformers.AutoProcessor.from_pretrained(str(ctx.model_dir), trust_remote_code=ctx.trust_remote_code)
    model = getattr(transformers, auto_class).from_pretrained(
        str(ctx.model_dir), dtype=ctx.torch_dtype(), trust_remote_code=ctx.trust_remote_code, **ctx.loading_kwargs
    )
    if "device_map" not in ctx.loading_kwargs:
        model.to(ctx.device)
    model.eval()
    return MediaChatHandler(ctx.task, model, processor, ctx.device)
