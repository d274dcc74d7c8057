"""Task registry: each task of the public API maps to the module and loader of its family."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from modelcluster.runtime.tasks.base import Handler, LoadContext


@dataclass(frozen=True)
class TaskEntry:
    family: str  # the model image that serves it: model-images/<family>/
    loader: str  # "module:function" under modelcluster.runtime.tasks
    streams: bool = False


def _entries() -> dict[str, TaskEntry]:
    text = {
        "fill-mask": "text:load_fill_mask",
        "text-classification": "text:load_text_classification",
        "token-classification": "text:load_token_classification",
        "zero-shot-classification": "text:load_zero_shot_classification",
        "question-answering": "text:load_question_answering",
        "feature-extraction": "embeddings:load_embeddings",
        "sentence-similarity": "embeddings:load_embeddings",
    }
    llm = {
        "text-generation": "generation:load_text_generation",
        "chat": "generation:load_chat",
    }
    generation = {
        "text2text-generation": "generation:load_seq2seq",
        "summarization": "generation:load_seq2seq",
        "translation": "generation:load_seq2seq",
    }
    vision = {
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
    }
    multimodal = {
        "image-text-to-text": "multimodal:load_media_chat",
        "audio-text-to-text": "multimodal:load_media_chat",
        "video-text-to-text": "multimodal:load_media_chat",
    }
    audio = {
        "audio-classification": "audio:load_audio_classification",
        "automatic-speech-recognition": "audio:load_speech_recognition",
        "text-to-speech": "audio:load_text_to_audio",
        "text-to-audio": "audio:load_text_to_audio",
    }
    diffusion = {
        "text-to-image": "diffusion:load_text_to_image",
        "unconditional-image-generation": "diffusion:load_unconditional",
        "text-to-video": "diffusion:load_text_to_video",
    }
    entries: dict[str, TaskEntry] = {}
    for family, table in (
        ("text", text),
        ("text", generation),
        ("llm", llm),
        ("vision", vision),
        ("vision", multimodal),
        ("audio", audio),
        ("diffusion", diffusion),
    ):
        for task, loader in table.items():
            entries[task] = TaskEntry(family=family, loader=loader, streams=table is generation or table is llm)
    entries["audio-text-to-text"] = TaskEntry(family="audio", loader=multimodal["audio-text-to-text"])
    return entries


TASKS: dict[str, TaskEntry] = _entries()


def known_tasks() -> list[str]:
    return sorted(TASKS)


def resolve_loader(task: str) -> Callable[[LoadContext], Handler]:
    entry = TASKS.get(task)
    if entry is None:
        raise ValueError(f"unknown task {task!r}; known tasks: {', '.join(known_tasks())}")
    module_name, function = entry.loader.split(":")
    module = importlib.import_module(f"modelcluster.runtime.tasks.{module_name}")
    loader: Callable[[LoadContext], Handler] = getattr(module, function)
    return loader
