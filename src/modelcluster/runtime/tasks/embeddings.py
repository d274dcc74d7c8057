"""Sentence embeddings (feature-extraction, sentence-similarity): sentence-transformers when the model
directory is a sentence-transformers model, otherwise mean pooling over a transformers encoder."""

from __future__ import annotations

from typing import Any

from modelcluster.api.inputs import Payload
from modelcluster.runtime.errors import InputError
from modelcluster.runtime.tasks.base import Handler, LoadContext, as_text_list

#: Texts per forward pass: a batch of requests (each up to ``MAX_ITEMS`` texts) runs as several passes of this size.
FORWARD_BATCH = 32


class EmbeddingHandler(Handler):
    """``text`` as a string answers one vector ``[float...]``; a list of strings answers ``[[float...]...]``."""

    params = frozenset({"normalize_embeddings"})

    def __init__(self, task: str, encode: Any) -> None:
        self.task = task
        self._encode = encode

    def prepare(self, payload: Payload, media: list[bytes]) -> Any:
        texts, single = as_text_list(payload)
        if any(not isinstance(text, str) for text in texts):
            raise InputError("`text` must be a string or a list of strings")
        return (texts, single)

    def check_params(self, params: dict[str, Any]) -> dict[str, Any]:
        checked = super().check_params(params)
        if not isinstance(checked.get("normalize_embeddings", False), bool):
            raise InputError("normalize_embeddings must be true or false")
        return checked

    def run_batch(self, items: list[Any], params: dict[str, Any]) -> list[Any]:
        flat = [text for texts, _ in items for text in texts]
        vectors = self._encode(flat, bool(params.get("normalize_embeddings", False)))
        outputs: list[Any] = []
        position = 0
        for texts, single in items:
            chunk = vectors[position : position + len(texts)]
            position += len(texts)
            outputs.append(chunk[0] if single else chunk)
        return outputs

    def warmup(self) -> None:
        self._encode(["warm up"], False)


def is_sentence_transformers_dir(model_dir: Any) -> bool:
    from pathlib import Path

    return (Path(model_dir) / "modules.json").is_file()


def load_embeddings(ctx: LoadContext) -> Handler:
    if is_sentence_transformers_dir(ctx.model_dir):
        from sentence_transformers import SentenceTransformer

        model_kwargs: dict[str, Any] = {"dtype": ctx.torch_dtype(), **ctx.loading_kwargs}
        model = SentenceTransformer(
            str(ctx.model_dir), device=ctx.device, trust_remote_code=ctx.trust_remote_code, model_kwargs=model_kwargs
        )

        def encode(texts: list[str], normalize: bool) -> list[list[float]]:
            array = model.encode(
                texts,
                batch_size=max(1, min(FORWARD_BATCH, len(texts))),
                normalize_embeddings=normalize,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
            result: list[list[float]] = array.tolist()
            return result

        return EmbeddingHandler(ctx.task, encode)

    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(ctx.model_dir))
    encoder = AutoModel.from_pretrained(str(ctx.model_dir), dtype=ctx.torch_dtype(), **ctx.loading_kwargs)
    encoder.to(ctx.device).eval()

    def mean_pool(texts: list[str], normalize: bool) -> list[list[float]]:
        vectors: list[list[float]] = []
        for start in range(0, len(texts), FORWARD_BATCH):
            vectors.extend(mean_pool_pass(texts[start : start + FORWARD_BATCH], normalize))
        return vectors

    def mean_pool_pass(texts: list[str], normalize: bool) -> list[list[float]]:
        batch = tokenizer(texts, padding=True, truncation=True, return_tensors="pt").to(ctx.device)
        with torch.inference_mode():
            hidden = encoder(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        if normalize:
            pooled = torch.nn.functional.normalize(pooled, dim=-1)
        result: list[list[float]] = pooled.float().cpu().tolist()
        return result

    return EmbeddingHandler(ctx.task, mean_pool)
