"""One tiny model per task, ``modelcluster/tiny-<task>``, placed into the local cluster's hub cache offline.

Each comes from a builder of :mod:`modelcluster.devcluster.tiny_builders` (random weights from a fixed seed,
tokenizers and processors made locally), placed with :func:`~modelcluster.devcluster.offline_models.place_snapshot`
under a revision named by what it follows from (the builders' source and the library versions), so the first
``cluster up`` writes them (seconds, after torch has loaded) and later ones find them without importing torch.
``chat`` is served by ``modelcluster/tiny-chat`` (:mod:`modelcluster.devcluster.tiny_models`) and
``sentence-similarity`` by all-MiniLM-L6-v2 (:mod:`modelcluster.devcluster.offline_models`).

The catalog (``catalog/default.yaml``) lists every model here with the local image of its family, which the
local cluster runs as a process (``e2e/pod-commands.yaml``).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from importlib import import_module, metadata
from pathlib import Path
from typing import Any

from modelcluster.devcluster import tiny_builders, tiny_models
from modelcluster.devcluster.binaries import log
from modelcluster.devcluster.offline_models import place_snapshot, revision_of, snapshot_dir

ORG = "modelcluster"
#: The libraries whose versions change what the builders write.
LIBRARIES = ("torch", "transformers", "tokenizers", "diffusers")


@dataclass(frozen=True)
class TinyModel:
    """A task's tiny model: its hub id and the builder that writes its directory."""

    task: str
    builder: Callable[[Path], Path]

    @property
    def model_id(self) -> str:
        return f"{ORG}/tiny-{self.task}"


#: The mask token of ``modelcluster/tiny-fill-mask``: RoBERTa's and CamemBERT's, as in the API's fill-mask example.
FILL_MASK_TOKEN = "<mask>"


def _bert(task: str) -> Callable[[Path], Path]:
    if task == "fill-mask":
        return partial(tiny_builders.bert, task=task, mask_token=FILL_MASK_TOKEN)
    return partial(tiny_builders.bert, task=task)


#: Every task but ``chat`` and ``sentence-similarity`` (served by the models named above), sorted by task.
TINY_MODELS: tuple[TinyModel, ...] = tuple(
    sorted(
        (
            # text
            TinyModel("feature-extraction", tiny_builders.bert_encoder),
            *(TinyModel(task, _bert(task)) for task in tiny_builders.BERT_TASKS),
            TinyModel("summarization", tiny_builders.bart),
            TinyModel("translation", tiny_builders.t5),
            TinyModel("text2text-generation", tiny_builders.t5),
            # llm
            TinyModel("text-generation", tiny_builders.gpt2),
            # vision
            TinyModel("image-classification", tiny_builders.vit),
            TinyModel("image-feature-extraction", tiny_builders.vit),
            TinyModel("object-detection", tiny_builders.yolos),
            TinyModel("image-segmentation", tiny_builders.segformer),
            TinyModel("depth-estimation", tiny_builders.glpn),
            TinyModel("mask-generation", tiny_builders.sam),
            TinyModel("image-to-text", tiny_builders.blip),
            TinyModel("visual-question-answering", tiny_builders.llava),
            TinyModel("document-question-answering", tiny_builders.layoutlm),
            TinyModel("zero-shot-image-classification", tiny_builders.clip),
            TinyModel("zero-shot-object-detection", tiny_builders.owlvit),
            TinyModel("video-classification", tiny_builders.videomae),
            TinyModel("image-text-to-text", tiny_builders.llava),
            TinyModel("video-text-to-text", tiny_builders.qwen2_vl),
            # audio
            TinyModel("audio-classification", tiny_builders.wav2vec2_classifier),
            TinyModel("automatic-speech-recognition", tiny_builders.wav2vec2_ctc),
            TinyModel("audio-text-to-text", tiny_builders.qwen2_audio),
            TinyModel("text-to-speech", tiny_builders.vits),
            TinyModel("text-to-audio", tiny_builders.musicgen),
            # diffusion
            TinyModel("text-to-image", tiny_builders.stable_diffusion),
            TinyModel("unconditional-image-generation", tiny_builders.ddpm),
            TinyModel("text-to-video", tiny_builders.text_to_video_sd),
        ),
        key=lambda model: model.task,
    )
)


def by_task() -> dict[str, str]:
    """Task -> the id of its tiny model, for every task but ``sentence-similarity`` (``chat`` included)."""
    return {"chat": tiny_models.MODEL_ID, **{model.task: model.model_id for model in TINY_MODELS}}


def sources_digest() -> str:
    """The digest of the builders' source: a change to any builder makes new snapshots."""
    digest = hashlib.sha256()
    for module in (tiny_builders, tiny_models):
        digest.update(Path(module.__file__ or "").read_bytes())
    return digest.hexdigest()


def recipe(model: TinyModel, digest: str, versions: dict[str, str]) -> str:
    """Everything a tiny model's files follow from; its hash names the snapshot."""
    return json.dumps(
        {"model": model.model_id, "task": model.task, "builders": digest, "libraries": versions}, sort_keys=True
    )


def library_versions() -> dict[str, str]:
    """The installed versions of :data:`LIBRARIES`; ``PackageNotFoundError`` without the ``runtime`` extra."""
    return {name: metadata.version(name) for name in LIBRARIES}


def missing(hf_home: Path, revisions: dict[str, str]) -> list[TinyModel]:
    """The tiny models whose snapshot of this revision is not in the cache yet."""
    return [model for model in TINY_MODELS if not snapshot_dir(hf_home, model.model_id, revisions[model.task]).is_dir()]


def _quiet_progress_bars() -> Callable[[], None]:
    """Turn transformers' progress bars off (tiny single shards would only clutter the log); undo with the result."""
    bars: Any = import_module("transformers.utils.logging")
    enabled = bars.is_progress_bar_enabled()
    bars.disable_progress_bar()
    return bars.enable_progress_bar if enabled else (lambda: None)


def seed_tiny_models(hf_home: Path) -> list[str]:
    """Place every tiny model under ``hf_home``; their ids (empty without the ``runtime`` extra).

    Snapshots already there are kept as they are, without importing torch; otherwise one line says what is being
    generated, and one more when it is done.
    """
    try:
        versions = library_versions()
    except metadata.PackageNotFoundError as exc:
        log(f"tiny models not generated: {exc} is not installed (it comes with the `runtime` extra)")
        return []
    digest = sources_digest()
    revisions = {model.task: revision_of(recipe(model, digest, versions)) for model in TINY_MODELS}
    todo = missing(hf_home, revisions)
    started = time.monotonic()
    if todo:
        log(f"generating {len(todo)} tiny models (modelcluster/tiny-<task>, random weights, seed 0) ...")
    restore = _quiet_progress_bars() if todo else (lambda: None)
    try:
        for model in TINY_MODELS:  # a snapshot already there only gets its refs/main written again
            place_snapshot(hf_home, model.model_id, revisions[model.task], model.builder)
    finally:
        restore()
    if todo:
        log(f"generating {len(todo)} tiny models done in {time.monotonic() - started:.1f}s")
    return [model.model_id for model in TINY_MODELS]
