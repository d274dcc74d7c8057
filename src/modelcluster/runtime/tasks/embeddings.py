"""Sentence embeddings (feature-extraction, sentence-similarity): sentence-transformers when the model
directory is a sentence-transformers model, otherwise mean pooling over a transformers encoder.

Texts are measured (tokenized) in ``prepare``, off the inference thread, and a batch runs as forward passes of
texts of similar length (:func:`modelcluster.runtime.bucketing.plan_passes`), so padding stays small.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from modelcluster.api.errors import InputError
from modelcluster.api.inputs import Payload
from modelcluster.runtime.bucketing import pass_overhead_tokens, plan_passes
from modelcluster.runtime.tasks.base import Handler, LoadContext, as_text_list

#: Most texts per forward pass; a batch (or one request's `text` list) longer than this runs as several passes.
FORWARD_BATCH = 32


class TextEncoder(Protocol):
    """A model's two halves as the handler uses them: ``tokenize`` (any thread) and ``encode`` (one pass)."""

    def tokenize(self, texts: list[str]) -> list[Any]:
        """One unit per text, ready for ``encode``."""

    def length(self, unit: Any) -> int:
        """Tokens of a unit (what its pass pads to)."""

    def encode(self, units: list[Any], normalize: bool) -> list[list[float]]:
        """One forward pass over the units: a vector each."""


@dataclass(frozen=True)
class EmbeddingInput:
    """A request's texts, tokenized: ``single`` when ``text`` was one string (answered with one vector)."""

    units: list[Any]
    lengths: list[int]
    single: bool


class EmbeddingHandler(Handler):
    """``text`` as a string answers one vector ``[float...]``; a list of strings answers ``[[float...]...]``."""

    params = frozenset({"normalize_embeddings"})

    def __init__(self, task: str, encoder: TextEncoder, pass_overhead: int) -> None:
        self.task = task
        self.encoder = encoder
        self.pass_overhead = pass_overhead

    def prepare(self, payload: Payload, media: list[bytes]) -> Any:
        texts, single = as_text_list(payload)
        if any(not isinstance(text, str) for text in texts):
            raise InputError("`text` must be a string or a list of strings")
        if not texts:
            raise InputError("`text` is an empty list")
        units = self.encoder.tokenize(texts)
        return EmbeddingInput(units, [self.encoder.length(unit) for unit in units], single)

    def item_count(self, item: Any) -> int:
        return len(item.units) if isinstance(item, EmbeddingInput) else 1

    def check_params(self, params: dict[str, Any]) -> dict[str, Any]:
        checked = super().check_params(params)
        if not isinstance(checked.get("normalize_embeddings", False), bool):
            raise InputError("normalize_embeddings must be true or false")
        return checked

    def run_batch(self, items: list[Any], params: dict[str, Any]) -> list[Any]:
        inputs: list[EmbeddingInput] = items
        units = [unit for item in inputs for unit in item.units]
        lengths = [length for item in inputs for length in item.lengths]
        normalize = bool(params.get("normalize_embeddings", False))
        vectors: list[list[float]] = [[] for _ in units]
        for indices in plan_passes(lengths, FORWARD_BATCH, self.pass_overhead):
            for index, vector in zip(indices, self.encoder.encode([units[i] for i in indices], normalize), strict=True):
                vectors[index] = vector
        outputs: list[Any] = []
        position = 0
        for item in inputs:
            chunk = vectors[position : position + len(item.units)]
            position += len(item.units)
            outputs.append(chunk[0] if item.single else chunk)
        return outputs

    def warmup(self) -> None:
        self.run_batch([self.prepare(Payload(text="warm up"), [])], {})


def is_sentence_transformers_dir(model_dir: Any) -> bool:
    from pathlib import Path

    return (Path(model_dir) / "modules.json").is_file()


class SentenceTransformersEncoder:
    """sentence-transformers' own ``encode`` per pass (its modules, pooling and prompts as configured); texts are
    measured with its tokenizer to plan the passes."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.max_length = int(getattr(model, "max_seq_length", None) or 512)

    def tokenize(self, texts: list[str]) -> list[Any]:
        tokenizer = self.model.tokenizer
        ids = tokenizer(texts, truncation=True, max_length=self.max_length)["input_ids"]
        return [(text, len(row)) for text, row in zip(texts, ids, strict=True)]

    def length(self, unit: Any) -> int:
        length: int = unit[1]
        return length

    def encode(self, units: list[Any], normalize: bool) -> list[list[float]]:
        array = self.model.encode(
            [text for text, _ in units],
            batch_size=len(units),
            normalize_embeddings=normalize,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        result: list[list[float]] = array.tolist()
        return result


class MeanPoolEncoder:
    """Mean pooling over a transformers encoder: texts are tokenized once, in ``prepare``; a pass only pads."""

    def __init__(self, tokenizer: Any, model: Any, device: str) -> None:
        self.tokenizer = tokenizer
        self.model = model
        self.device = device

    def tokenize(self, texts: list[str]) -> list[Any]:
        encoded = self.tokenizer(texts, truncation=True)
        return [{key: encoded[key][row] for key in encoded} for row in range(len(texts))]

    def length(self, unit: Any) -> int:
        return len(unit["input_ids"])

    def encode(self, units: list[Any], normalize: bool) -> list[list[float]]:
        import torch

        batch = self.tokenizer.pad(units, padding=True, return_tensors="pt").to(self.device)
        with torch.inference_mode():
            hidden = self.model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        if normalize:
            pooled = torch.nn.functional.normalize(pooled, dim=-1)
        result: list[list[float]] = pooled.float().cpu().tolist()
        return result


def load_embeddings(ctx: LoadContext) -> Handler:
    overhead = pass_overhead_tokens(ctx.device)
    if is_sentence_transformers_dir(ctx.model_dir):
        from sentence_transformers import SentenceTransformer

        model_kwargs: dict[str, Any] = {"dtype": ctx.torch_dtype(), **ctx.loading_kwargs}
        model = SentenceTransformer(
            str(ctx.model_dir), device=ctx.device, trust_remote_code=ctx.trust_remote_code, model_kwargs=model_kwargs
        )
        return EmbeddingHandler(ctx.task, SentenceTransformersEncoder(model), overhead)

    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(ctx.model_dir))
    encoder = AutoModel.from_pretrained(str(ctx.model_dir), dtype=ctx.torch_dtype(), **ctx.loading_kwargs)
    encoder.to(ctx.device).eval()
    return EmbeddingHandler(ctx.task, MeanPoolEncoder(tokenizer, encoder, ctx.device), overhead)
