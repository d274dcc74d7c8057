"""Text understanding: fill-mask, text/token/zero-shot classification, extractive question answering."""

from __future__ import annotations

from typing import Any

from modelcluster.api.inputs import Payload
from modelcluster.runtime.errors import InputError
from modelcluster.runtime.tasks.base import Handler, LoadContext
from modelcluster.runtime.tasks.common import build_pipeline, jsonable, per_input


class TextPipelineHandler(Handler):
    """One text per request, a list of texts per model call."""

    batchable = True

    def __init__(self, task: str, pipe: Any, params: frozenset[str]) -> None:
        self.task = task
        self.pipe = pipe
        self.params = params

    def prepare(self, payload: Payload, media: list[bytes]) -> Any:
        if not isinstance(payload.text, str):
            raise InputError(f"{self.task} takes one string in `text`")
        if not payload.text.strip():
            raise InputError("`text` is empty")
        return payload.text

    def run_batch(self, items: list[Any], params: dict[str, Any]) -> list[Any]:
        results = per_input(self.pipe(list(items), batch_size=len(items), **params), len(items))
        return [self.shape(jsonable(result)) for result in results]

    def shape(self, result: Any) -> Any:
        return result


class TextClassificationHandler(TextPipelineHandler):
    def shape(self, result: Any) -> Any:
        return [result] if isinstance(result, dict) else result


class FillMaskHandler(TextPipelineHandler):
    def prepare(self, payload: Payload, media: list[bytes]) -> Any:
        text = super().prepare(payload, media)
        mask = self.pipe.tokenizer.mask_token
        if mask is None or mask not in text:
            raise InputError(f"`text` must contain the mask token {mask}")
        return text


class ZeroShotHandler(Handler):
    task = "zero-shot-classification"
    params = frozenset({"hypothesis_template", "multi_label"})

    def __init__(self, pipe: Any) -> None:
        self.pipe = pipe

    def prepare(self, payload: Payload, media: list[bytes]) -> Any:
        if not isinstance(payload.text, str) or not payload.text.strip():
            raise InputError("zero-shot-classification takes one non-empty string in `text`")
        return (payload.text, list(payload.candidate_labels or []))

    def run_batch(self, items: list[Any], params: dict[str, Any]) -> list[Any]:
        return [jsonable(self.pipe(text, candidate_labels=labels, **params)) for text, labels in items]


class QuestionAnsweringHandler(Handler):
    """Extractive QA on an ``AutoModelForQuestionAnswering``: the best-scoring span inside the context."""

    task = "question-answering"
    params = frozenset({"max_answer_len", "max_seq_len"})

    def __init__(self, model: Any, tokenizer: Any, device: str) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.device = device

    def prepare(self, payload: Payload, media: list[bytes]) -> Any:
        if not (payload.question or "").strip() or not (payload.context or "").strip():
            raise InputError("`question` and `context` must be non-empty strings")
        return (payload.question, payload.context)

    def run_batch(self, items: list[Any], params: dict[str, Any]) -> list[Any]:
        import torch

        max_answer_len = int(params.get("max_answer_len", 15))
        max_seq_len = int(params.get("max_seq_len", min(384, self.tokenizer.model_max_length)))
        if max_answer_len < 1:
            raise InputError("max_answer_len must be at least 1")
        encoded = self.tokenizer(
            [question for question, _ in items],
            [context for _, context in items],
            truncation="only_second",
            max_length=max_seq_len,
            padding=True,
            return_offsets_mapping=True,
            return_tensors="pt",
        )
        offsets = encoded.pop("offset_mapping").tolist()
        with torch.inference_mode():
            outputs = self.model(**{key: value.to(self.device) for key, value in encoded.items()})
        start_logits = outputs.start_logits.float().cpu()
        end_logits = outputs.end_logits.float().cpu()
        answers = []
        for row, (_, context) in enumerate(items):
            sequence_ids = encoded.sequence_ids(row)
            context_positions = [i for i, sid in enumerate(sequence_ids) if sid == 1]
            answers.append(
                best_span(
                    start_logits[row].tolist(),
                    end_logits[row].tolist(),
                    context_positions,
                    offsets[row],
                    context,
                    max_answer_len,
                )
            )
        return answers


def best_span(
    start_logits: list[float],
    end_logits: list[float],
    context_positions: list[int],
    offsets: list[list[int]],
    context: str,
    max_answer_len: int,
) -> dict[str, Any]:
    """The span (start <= end, at most ``max_answer_len`` tokens, inside the context) with the best probability."""
    import math

    if not context_positions:
        raise InputError("the context was truncated away; shorten the question")

    def softmax(values: list[float]) -> list[float]:
        top = max(values[i] for i in context_positions)
        exps = {i: math.exp(values[i] - top) for i in context_positions}
        total = sum(exps.values())
        return [exps.get(i, 0.0) / total for i in range(len(values))]

    start_p, end_p = softmax(start_logits), softmax(end_logits)
    best = (-1.0, context_positions[0], context_positions[0])
    allowed = set(context_positions)
    for s in context_positions:
        for e in range(s, min(s + max_answer_len, len(end_p))):
            if e not in allowed:
                break
            score = start_p[s] * end_p[e]
            if score > best[0]:
                best = (score, s, e)
    score, s, e = best
    char_start, char_end = offsets[s][0], offsets[e][1]
    return {"score": score, "start": char_start, "end": char_end, "answer": context[char_start:char_end]}


def load_text_classification(ctx: LoadContext) -> Handler:
    pipe = build_pipeline(ctx, "text-classification")
    return TextClassificationHandler(ctx.task, pipe, frozenset({"top_k", "function_to_apply"}))


def load_token_classification(ctx: LoadContext) -> Handler:
    pipe = build_pipeline(ctx, "token-classification")
    return TextPipelineHandler(ctx.task, pipe, frozenset({"aggregation_strategy", "ignore_labels", "stride"}))


def load_fill_mask(ctx: LoadContext) -> Handler:
    pipe = build_pipeline(ctx, "fill-mask")
    return FillMaskHandler(ctx.task, pipe, frozenset({"top_k", "targets"}))


def load_zero_shot_classification(ctx: LoadContext) -> Handler:
    return ZeroShotHandler(build_pipeline(ctx, "zero-shot-classification"))


def load_question_answering(ctx: LoadContext) -> Handler:
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(ctx.model_dir))
    model = AutoModelForQuestionAnswering.from_pretrained(
        str(ctx.model_dir), dtype=ctx.torch_dtype(), trust_remote_code=ctx.trust_remote_code, **ctx.loading_kwargs
    )
    model.to(ctx.device).eval()
    return QuestionAnsweringHandler(model, tokenizer, ctx.device)
