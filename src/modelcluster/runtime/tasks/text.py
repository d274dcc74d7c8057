"""Text understanding: fill-mask, text/token/zero-shot classification, extractive question answering.

Each batches: a batch of requests runs as forward passes of inputs of similar token length
(:func:`modelcluster.runtime.bucketing.plan_passes`), measured when the request is prepared.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modelcluster.api.errors import InputError
from modelcluster.api.inputs import Payload
from modelcluster.runtime.bucketing import pass_overhead_tokens, plan_passes
from modelcluster.runtime.limits import check_integer
from modelcluster.runtime.tasks.base import Handler, LoadContext
from modelcluster.runtime.tasks.common import build_pipeline, jsonable, per_input

#: Most sequences per forward pass.
FORWARD_BATCH = 32
DEFAULT_HYPOTHESIS = "This example is {}."


@dataclass(frozen=True)
class MeasuredText:
    text: str
    length: int  # tokens, for length bucketing


def token_length(tokenizer: Any, text: str) -> int:
    """Tokens of ``text`` as the model sees it (truncated to the model's maximum)."""
    if tokenizer is None:
        return max(1, len(text) // 4)
    return len(tokenizer(text, truncation=True)["input_ids"])


class TextPipelineHandler(Handler):
    """One text per request; a batch runs as pipeline calls over texts of similar length."""

    def __init__(self, task: str, pipe: Any, params: frozenset[str]) -> None:
        self.task = task
        self.pipe = pipe
        self.params = params
        self.pass_overhead = pass_overhead_tokens(str(getattr(pipe, "device", "cpu")))

    def prepare(self, payload: Payload, media: list[bytes]) -> Any:
        if not isinstance(payload.text, str):
            raise InputError(f"{self.task} takes one string in `text`")
        if not payload.text.strip():
            raise InputError("`text` is empty")
        return MeasuredText(payload.text, token_length(self.pipe.tokenizer, payload.text))

    def run_batch(self, items: list[Any], params: dict[str, Any]) -> list[Any]:
        texts: list[MeasuredText] = items
        outputs: list[Any] = [None] * len(texts)
        for indices in plan_passes([text.length for text in texts], FORWARD_BATCH, self.pass_overhead):
            batch = [texts[i].text for i in indices]
            results = per_input(self.pipe(batch, batch_size=len(batch), **params), len(batch))
            for index, result in zip(indices, results, strict=True):
                outputs[index] = self.shape(jsonable(result))
        return outputs

    def shape(self, result: Any) -> Any:
        return result


class TextClassificationHandler(TextPipelineHandler):
    def shape(self, result: Any) -> Any:
        return [result] if isinstance(result, dict) else result


class FillMaskHandler(TextPipelineHandler):
    def prepare(self, payload: Payload, media: list[bytes]) -> Any:
        measured = super().prepare(payload, media)
        mask = self.pipe.tokenizer.mask_token
        if mask is None or mask not in measured.text:
            raise InputError(f"`text` must contain the mask token {mask}")
        return measured


class ZeroShotHandler(Handler):
    """NLI zero-shot classification, batched: every (text, hypothesis) pair of every request in the batch runs
    in forward passes of similar length; scores as the transformers pipeline computes them."""

    task = "zero-shot-classification"
    params = frozenset({"hypothesis_template", "multi_label"})

    def __init__(self, pipe: Any) -> None:
        self.pipe = pipe
        self.tokenizer = pipe.tokenizer
        self.model = pipe.model
        self.device = pipe.device
        self.pass_overhead = pass_overhead_tokens(str(pipe.device))

    def check_params(self, params: dict[str, Any]) -> dict[str, Any]:
        checked = super().check_params(params)
        template = checked.get("hypothesis_template", DEFAULT_HYPOTHESIS)
        if not isinstance(template, str) or template.format("x") == template:
            raise InputError("hypothesis_template must be a string with {} where the label goes")
        if not isinstance(checked.get("multi_label", False), bool):
            raise InputError("multi_label must be true or false")
        return checked

    def prepare(self, payload: Payload, media: list[bytes]) -> Any:
        if not isinstance(payload.text, str) or not payload.text.strip():
            raise InputError("zero-shot-classification takes one non-empty string in `text`")
        labels = list(payload.candidate_labels or [])
        if not labels or any(not isinstance(label, str) for label in labels):
            raise InputError("`candidate_labels` must be a non-empty list of strings")
        return (payload.text, labels)

    def item_count(self, item: Any) -> int:
        return len(item[1])

    def encode_pairs(self, text: str, labels: list[str], template: str) -> list[dict[str, Any]]:
        """The tokenized (text, hypothesis) pairs of one request, unpadded; the text is truncated, not the label."""
        pairs = [[text, template.format(label)] for label in labels]
        encoded = self.tokenizer(pairs, truncation="only_first")
        names = [name for name in self.tokenizer.model_input_names if name in encoded]
        return [{name: encoded[name][row] for name in names} for row in range(len(pairs))]

    def run_batch(self, items: list[Any], params: dict[str, Any]) -> list[Any]:
        import torch

        template = params.get("hypothesis_template", DEFAULT_HYPOTHESIS)
        outputs: list[Any] = [None] * len(items)
        pairs: list[dict[str, Any]] = []
        owners: list[int] = []
        for index, (text, labels) in enumerate(items):
            try:
                encoded = self.encode_pairs(text, labels, template)
            except (ValueError, TypeError) as exc:  # this request's text cannot be paired (too long a label)
                outputs[index] = InputError(f"the model could not process this input: {exc}")
                continue
            pairs += encoded
            owners += [index] * len(encoded)
        logits: list[list[float]] = [[] for _ in pairs]
        for indices in plan_passes([len(pair["input_ids"]) for pair in pairs], FORWARD_BATCH, self.pass_overhead):
            batch = self.tokenizer.pad([pairs[i] for i in indices], padding=True, return_tensors="pt")
            with torch.inference_mode():
                result = self.model(**{key: value.to(self.device) for key, value in batch.items()})
            for index, row in zip(indices, result.logits.float().cpu().tolist(), strict=True):
                logits[index] = row
        for index, (text, labels) in enumerate(items):
            if outputs[index] is None:
                rows = [row for row, owner in zip(logits, owners, strict=True) if owner == index]
                multi = bool(params.get("multi_label", False))
                outputs[index] = zero_shot_output(text, labels, rows, self.pipe.entailment_id, multi)
        return outputs


def zero_shot_output(
    text: str, labels: list[str], logits: list[list[float]], entailment_id: int, multi_label: bool
) -> dict[str, Any]:
    """``{sequence, labels, scores}`` from one request's NLI logits (one row per label), labels best first:
    with ``multi_label`` (or one label) each label's entailment against contradiction, else the entailment
    logits' softmax over the labels."""
    import math

    if multi_label or len(labels) == 1:
        contradiction_id = -1 if entailment_id == 0 else 0
        scores = [1.0 / (1.0 + math.exp(row[contradiction_id] - row[entailment_id])) for row in logits]
    else:
        entail = [row[entailment_id] for row in logits]
        top = max(entail)
        exps = [math.exp(value - top) for value in entail]
        scores = [value / sum(exps) for value in exps]
    order = sorted(range(len(labels)), key=lambda i: scores[i], reverse=True)
    return {"sequence": text, "labels": [labels[i] for i in order], "scores": [scores[i] for i in order]}


class QuestionAnsweringHandler(Handler):
    """Extractive QA on an ``AutoModelForQuestionAnswering``: the best-scoring span inside the context."""

    task = "question-answering"
    params = frozenset({"max_answer_len", "max_seq_len"})

    def __init__(self, model: Any, tokenizer: Any, device: str) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.device = device

    def check_params(self, params: dict[str, Any]) -> dict[str, Any]:
        checked = super().check_params(params)
        check_integer("max_answer_len", checked.get("max_answer_len", 15), 1, 512)
        check_integer("max_seq_len", checked.get("max_seq_len", 384), 8, 4096)
        return checked

    def prepare(self, payload: Payload, media: list[bytes]) -> Any:
        if not (payload.question or "").strip() or not (payload.context or "").strip():
            raise InputError("`question` and `context` must be non-empty strings")
        return (payload.question, payload.context)

    def run_batch(self, items: list[Any], params: dict[str, Any]) -> list[Any]:
        """Passes of items of similar length (estimated from their characters); an item whose context was
        truncated away answers its own 422."""
        lengths = [(len(question) + len(context)) // 4 for question, context in items]
        outputs: list[Any] = [None] * len(items)
        for indices in plan_passes(lengths, FORWARD_BATCH, pass_overhead_tokens(self.device)):
            for index, output in zip(indices, self.run_pass([items[i] for i in indices], params), strict=True):
                outputs[index] = output
        return outputs

    def run_pass(self, items: list[Any], params: dict[str, Any]) -> list[Any]:
        import torch

        max_answer_len = int(params.get("max_answer_len", 15))
        max_seq_len = int(params.get("max_seq_len", min(384, self.tokenizer.model_max_length)))
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
        answers: list[Any] = []
        for row, (_, context) in enumerate(items):
            sequence_ids = encoded.sequence_ids(row)
            context_positions = [i for i, sid in enumerate(sequence_ids) if sid == 1]
            try:
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
            except InputError as exc:  # this request's answer only
                answers.append(exc)
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
