"""image-, audio- and video-text-to-text: chat messages whose content blocks carry media by url or base64."""

from __future__ import annotations

from typing import Any

from modelcluster.api.inputs import Payload
from modelcluster.runtime import media
from modelcluster.runtime.errors import InputError
from modelcluster.runtime.tasks.base import Handler, LoadContext, MediaRef
from modelcluster.runtime.tasks.common import build_pipeline, jsonable


class MediaChatHandler(Handler):
    """Runs the image-text-to-text (images) or any-to-any (audio, video) pipeline on the whole conversation."""

    params = frozenset({"max_new_tokens", "generate_kwargs"})

    def __init__(self, task: str, pipe: Any, sampling_rate: int) -> None:
        self.task = task
        self.pipe = pipe
        self.sampling_rate = sampling_rate

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
                    blocks.append({"type": "image", "image": media.load_image(next(blobs))})
                elif block.type == "audio":
                    blocks.append({"type": "audio", "audio": media.load_audio(next(blobs), self.sampling_rate)})
                else:
                    blocks.append({"type": "video", "video": media.load_video_frames(next(blobs), 16)})
            conversation.append({"role": message.role, "content": blocks})
        return conversation

    def run_batch(self, items: list[Any], params: dict[str, Any]) -> list[Any]:
        outputs = []
        for conversation in items:
            result = jsonable(self.pipe(text=conversation, return_full_text=False, **params))
            first = result[0] if isinstance(result, list) else result
            generated = first.get("generated_text", "") if isinstance(first, dict) else first
            if isinstance(generated, list):  # a conversation came back: its last turn is the answer
                generated = generated[-1].get("content", "")
            outputs.append({"role": "assistant", "content": generated})
        return outputs


def load_media_chat(ctx: LoadContext) -> Handler:
    pipeline_task = "image-text-to-text" if ctx.task == "image-text-to-text" else "any-to-any"
    pipe = build_pipeline(ctx, pipeline_task)
    extractor = getattr(getattr(pipe, "processor", None), "feature_extractor", None)
    return MediaChatHandler(ctx.task, pipe, int(getattr(extractor, "sampling_rate", 16000)))
