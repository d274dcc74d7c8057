"""The task table: every ML task of the public API, what it accepts and what it answers.

The single source of truth for tasks: the catalog (which family image serves a task), the
runtime (input checks, streaming, batching) and the gateway (validation before a cluster is
created or woken, ``/list/tasks``, media generators) all read it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from modelcluster.api.inputs import (
    MESSAGES,
    NOTHING,
    QUESTION_CONTEXT,
    TEXT,
    TEXT_LABELS,
    InputSpec,
    media_spec,
)

Family = Literal["text", "llm", "vision", "audio", "diffusion"]
MediaKind = Literal["image", "audio", "video"]


@dataclass(frozen=True)
class TaskInfo:
    """One task: the family image serving it, its inputs, its output, and how the runtime schedules it."""

    name: str
    family: Family
    inputs: InputSpec
    output: str  # the output shape, as the public docs write it
    streamable: bool = False
    batchable: bool = False
    generates: MediaKind | None = None  # media generators answer base64 in JSON, or raw bytes with `json: false`

    @property
    def media_generator(self) -> bool:
        return self.generates is not None


_IMAGE = media_spec("image")
_IMAGE_QUESTION = media_spec("image", "question")
_IMAGE_LABELS = media_spec("image", "candidate_labels")
_LABELS = "[{label, score}]"
_ASSISTANT = "{role, content}"

_TABLE: tuple[TaskInfo, ...] = (
    # text family
    TaskInfo("feature-extraction", "text", TEXT, "[float...]", batchable=True),
    TaskInfo("sentence-similarity", "text", TEXT, "[float...]", batchable=True),
    TaskInfo("fill-mask", "text", TEXT, "[{score, token, token_str, sequence}]", batchable=True),
    TaskInfo("text-classification", "text", TEXT, _LABELS, batchable=True),
    TaskInfo("token-classification", "text", TEXT, "[{entity, score, index, word, start, end}]", batchable=True),
    TaskInfo("zero-shot-classification", "text", TEXT_LABELS, "{sequence, labels, scores}", batchable=True),
    TaskInfo("question-answering", "text", QUESTION_CONTEXT, "{score, start, end, answer}", batchable=True),
    TaskInfo("summarization", "text", TEXT, "string", streamable=True),
    TaskInfo("translation", "text", TEXT, "string", streamable=True),
    TaskInfo("text2text-generation", "text", TEXT, "string", streamable=True),
    # llm family
    TaskInfo("text-generation", "llm", TEXT, "string", streamable=True),
    TaskInfo("chat", "llm", MESSAGES, _ASSISTANT, streamable=True),
    # vision family
    TaskInfo("image-classification", "vision", _IMAGE, _LABELS, batchable=True),
    TaskInfo("object-detection", "vision", _IMAGE, "[{score, label, box}]", batchable=True),
    TaskInfo("image-segmentation", "vision", _IMAGE, "[{label, score, mask_png}]"),
    TaskInfo("depth-estimation", "vision", _IMAGE, "{depth_png, formatted_predicted_depth_array}"),
    TaskInfo("mask-generation", "vision", _IMAGE, "{input_image_dimensions, masks, scores}"),
    TaskInfo("image-feature-extraction", "vision", _IMAGE, "[[float...]]"),
    TaskInfo("image-to-text", "vision", _IMAGE, "string"),
    TaskInfo("visual-question-answering", "vision", _IMAGE_QUESTION, "[{answer}]"),
    TaskInfo("document-question-answering", "vision", _IMAGE_QUESTION, "[{score, answer, start, end}]"),
    TaskInfo("zero-shot-image-classification", "vision", _IMAGE_LABELS, "[{score, label}]"),
    TaskInfo("zero-shot-object-detection", "vision", _IMAGE_LABELS, "[{score, label, box}]"),
    TaskInfo("video-classification", "vision", media_spec("video"), "[{score, label}]"),
    TaskInfo("image-text-to-text", "vision", MESSAGES, _ASSISTANT),
    TaskInfo("video-text-to-text", "vision", MESSAGES, _ASSISTANT),
    # audio family
    TaskInfo("audio-text-to-text", "audio", MESSAGES, _ASSISTANT),
    TaskInfo("audio-classification", "audio", media_spec("audio"), "[{score, label}]", batchable=True),
    TaskInfo("automatic-speech-recognition", "audio", media_spec("audio"), "string", batchable=True),
    TaskInfo("text-to-speech", "audio", TEXT, "base64 wav", generates="audio"),
    TaskInfo("text-to-audio", "audio", TEXT, "base64 wav", generates="audio"),
    # diffusion family
    TaskInfo("text-to-image", "diffusion", TEXT, "base64 png", generates="image"),
    TaskInfo("unconditional-image-generation", "diffusion", NOTHING, "base64 png", generates="image"),
    TaskInfo("text-to-video", "diffusion", TEXT, "base64 mp4", generates="video"),
)

TASKS: dict[str, TaskInfo] = {info.name: info for info in _TABLE}


def task_names() -> list[str]:
    """Every task, sorted."""
    return sorted(TASKS)


def task_info(task: str) -> TaskInfo:
    """The entry for ``task``; ``KeyError`` names the known tasks."""
    try:
        return TASKS[task]
    except KeyError:
        raise KeyError(f"unknown task {task!r}; known tasks: {', '.join(task_names())}") from None


def tasks_of_family(family: str) -> tuple[str, ...]:
    """The tasks a family image serves, sorted."""
    return tuple(sorted(info.name for info in _TABLE if info.family == family))
