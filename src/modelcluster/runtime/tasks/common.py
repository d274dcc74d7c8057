"""Helpers shared by the task families: pipeline construction and JSON-safe outputs."""

from __future__ import annotations

from importlib import import_module
from typing import Any

from modelcluster.runtime.tasks.base import LoadContext, StopCheck


def build_pipeline(ctx: LoadContext, pipeline_task: str, **extra: Any) -> Any:
    """A transformers pipeline read from the local model directory, placed on the chosen device."""
    pipeline: Any = import_module("transformers").pipeline
    kwargs: dict[str, Any] = {"dtype": ctx.torch_dtype(), "trust_remote_code": ctx.trust_remote_code}
    kwargs.update(ctx.loading_kwargs)
    kwargs.update(extra)
    return pipeline(pipeline_task, model=str(ctx.model_dir), device=ctx.device, **kwargs)


def stopping_criteria(should_stop: StopCheck) -> Any:
    """A transformers ``StoppingCriteriaList`` that ends ``generate()`` at the next token once ``should_stop()``."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    class StopWhenAsked(StoppingCriteria):
        def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any) -> torch.BoolTensor:
            stop = should_stop()
            return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)  # type: ignore[return-value]

    return StoppingCriteriaList([StopWhenAsked()])


def jsonable(value: Any) -> Any:
    """Convert numpy and torch scalars/arrays in a pipeline output to plain Python values."""
    if isinstance(value, dict):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(item) for item in value]
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    return value


def per_input(results: Any, count: int) -> list[Any]:
    """A pipeline answers a list input with one result per input, except that one input may come back bare."""
    if count == 1 and not (isinstance(results, list) and len(results) == 1):
        return [results]
    if not isinstance(results, list) or len(results) != count:
        raise RuntimeError(f"pipeline returned {type(results).__name__} for {count} inputs")
    return results
