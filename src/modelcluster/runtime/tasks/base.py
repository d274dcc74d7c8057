"""What every task handler provides, and what the loader hands it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelcluster.api.errors import InputError
from modelcluster.api.inputs import InputSpec, Payload
from modelcluster.api.streaming import TokenUsage
from modelcluster.api.tasks import TaskInfo, task_info
from modelcluster.runtime.limits import DEFAULT_LIMITS, Limits

StopCheck = Callable[[], bool]


def never_stop() -> bool:
    return False


class Stopped(Exception):
    """Raised by a handler that stopped work early because its ``should_stop`` turned true."""


@dataclass(frozen=True)
class LoadContext:
    """Where the model files are and how to place them."""

    model_dir: Path
    model_id: str
    task: str
    device: str
    dtype: str  # "float32", "float16" or "bfloat16"
    loading_kwargs: dict[str, Any] = field(default_factory=dict)
    trust_remote_code: bool = False
    engine: str = "auto"

    def torch_dtype(self) -> Any:
        import torch

        return getattr(torch, self.dtype)


@dataclass(frozen=True)
class MediaRef:
    url: str | None = None
    base64: str | None = None


@dataclass(frozen=True)
class MediaOutput:
    """Generated media; answered as base64 in JSON, or raw bytes when the body asks ``"json": false``."""

    data: bytes
    mime: str


class Handler:
    """A task served by a loaded model.

    ``prepare`` runs in a worker thread when the input is large or has media (it decodes, tokenizes), else on the
    event loop; ``run_until`` (``run_batch``) and ``stream`` run in the inference thread. ``run_batch`` answers one
    output per item, in order; an output that is an ``Exception`` fails only its own request (a per-item error),
    while an exception raised by ``run_batch`` fails the call, which the scheduler then retries in smaller parts so
    that only the requests that fail alone get the error. ``stream`` and ``astream`` yield text deltas and, when the
    generation ran to its end, one ``TokenUsage`` last. ``limits`` are set by the loader from the settings.
    """

    task: str = ""
    params: frozenset[str] = frozenset()
    concurrent: bool = False  # True: requests bypass the inference thread (the engine batches them itself)
    limits: Limits = DEFAULT_LIMITS

    @property
    def info(self) -> TaskInfo:
        """The task's entry in the task table: inputs, streaming, batching."""
        return task_info(self.task)

    @property
    def spec(self) -> InputSpec:
        return self.info.inputs

    @property
    def streamable(self) -> bool:
        return self.info.streamable

    @property
    def batchable(self) -> bool:
        return self.info.batchable

    def media_refs(self, payload: Payload) -> list[MediaRef]:
        if payload.url is not None or payload.base64 is not None:
            return [MediaRef(url=payload.url, base64=payload.base64)]
        return []

    def check_params(self, params: dict[str, Any]) -> dict[str, Any]:
        """Reject unknown params; handlers may rename aliases here."""
        unknown = sorted(set(params) - self.params)
        if unknown:
            hint = ", ".join(sorted(self.params)) or "none"
            raise InputError(f"unknown param(s) for {self.task}: {', '.join(unknown)} (accepted: {hint})")
        return dict(params)

    def prepare(self, payload: Payload, media: list[bytes]) -> Any:
        return payload

    def item_count(self, item: Any) -> int:
        """How many items a prepared input adds to a batch (the batch limit counts items, not requests)."""
        return 1

    def run_batch(self, items: list[Any], params: dict[str, Any]) -> list[Any]:
        raise NotImplementedError

    def run_until(self, items: list[Any], params: dict[str, Any], should_stop: StopCheck) -> list[Any]:
        """``run_batch`` for the scheduler: handlers whose work is long (generation, denoising) override this to
        stop early, returning partial outputs or raising :class:`Stopped`, once ``should_stop()`` is true."""
        return self.run_batch(items, params)

    def stream(self, item: Any, params: dict[str, Any], should_stop: Callable[[], bool]) -> Iterator[str | TokenUsage]:
        raise NotImplementedError(f"{self.task} does not stream")

    def astream(
        self, item: Any, params: dict[str, Any], should_stop: Callable[[], bool]
    ) -> AsyncIterator[str | TokenUsage]:
        raise NotImplementedError(f"{self.task} has no async engine")

    def finish(self, item: Any, params: dict[str, Any], text: str) -> Any:
        """The output of a generation that was not streamed, from the joined text deltas."""
        return text

    def warmup(self) -> None:
        """Run once after loading so the first request does not pay for lazy initialisation."""


def as_text_list(payload: Payload) -> tuple[list[str], bool]:
    """The texts of a payload and whether a single string was sent."""
    if isinstance(payload.text, str):
        return [payload.text], True
    if isinstance(payload.text, list):
        return list(payload.text), False
    raise InputError("`text` is required")
