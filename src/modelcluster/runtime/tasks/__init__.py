"""Task registry: each task of the public API maps to the loader of its handler."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from modelcluster.runtime.tasks.base import Handler, LoadContext


#: task -> "module:function" under modelcluster.runtime.tasks. The task table
#: (:mod:`modelcluster.api.tasks`) says what each task accepts, answers and which image serves it.
LOADERS: dict[str, str] = {
    "fill-mask": "text:load_fill_mask",
    "text-classification": "text:load_text_classification",
    "token-classification": "text:load_token_classification",
    "zero-shot-classification": "text:load_zero_shot_classification",
    "question-answering": "text:load_question_answering",
    "feature-extraction": "embeddings:load_embeddings",
    "sentence-similarity": "embeddings:load_embeddings",
    "text-generation": "generation:load_text_generation",
    "chat": "generation:load_chat",
    "text2text-generation": "generation:load_seq2seq",
    "summarization": "generation:load_seq2seq",
    "translation": "generation:load_seq2seq",
    "image-classification": "vision:load_image_classification",
    "object-detection": "vision:load_object_detection",
    "image-segmentation": "vision:load_image_segmentation",
    "image-to-text": "vision:load_image_to_text",
    "image-feature-extraction": "vision:load_image_feature_extraction",
    "zero-shot-image-classification": "vision:load_zero_shot_image_classification",
    "zero-shot-object-detection": "vision:load_zero_shot_object_detection",
    "visual-question-answering": "vision:load_visual_question_answering",
    "document-question-answering": "vision:load_document_question_answering",
    "depth-estimation": "vision:load_depth_estimation",
    "mask-generation": "vision:load_mask_generation",
    "video-classification": "vision:load_video_classification",
    "image-text-to-text": "multimodal:load_media_chat",
    "audio-text-to-text": "multimodal:load_media_chat",
    "video-text-to-text": "multimodal:load_media_chat",
    "audio-classification": "audio:load_audio_classification",
    "automatic-speech-recognition": "audio:load_speech_recognition",
    "text-to-speech": "audio:load_text_to_audio",
    "text-to-audio": "audio:load_text_to_audio",
    "text-to-image": "diffusion:load_text_to_image",
    "unconditional-image-generation": "diffusion:load_unconditional",
    "text-to-video": "diffusion:load_text_to_video",
}


def known_tasks() -> list[str]:
    return sorted(LOADERS)


def loader_module(task: str) -> str:
    """The module under modelcluster.runtime.tasks that loads ``task`` (e.g. ``embeddings``)."""
    target = LOADERS.get(task)
    if target is None:
        raise ValueError(f"unknown task {task!r}; known tasks: {', '.join(known_tasks())}")
    return target.split(":")[0]


def resolve_loader(task: str) -> Callable[[LoadContext], Handler]:
    module_name = loader_module(task)
    function = LOADERS[task].split(":")[1]
    module = importlib.import_module(f"modelcluster.runtime.tasks.{module_name}")
    loader: Callable[[LoadContext], Handler] = getattr(module, function)
    return loader
