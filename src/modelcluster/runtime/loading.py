"""Model loading: device and dtype choice, hub download with progress, the task handler, warm-up."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path
from typing import Any

from modelcluster.api.modelcluster import is_model_id
from modelcluster.runtime.llm_engine import VLLM_TASKS, tensor_parallel_kwargs, use_vllm
from modelcluster.runtime.settings import RuntimeSettings
from modelcluster.runtime.startup import StartupClock, import_libraries, task_libraries
from modelcluster.runtime.tasks import loader_module, resolve_loader
from modelcluster.runtime.tasks.base import Handler, LoadContext

logger = logging.getLogger(__name__)


def resolve_device(requested: str, cuda_available: bool) -> str:
    """``auto`` picks CUDA when present, else CPU; an explicit CUDA request without CUDA is an error."""
    if requested == "auto":
        return "cuda" if cuda_available else "cpu"
    if requested.startswith("cuda") and not cuda_available:
        raise RuntimeError(f"DEVICE={requested} but CUDA is not available")
    return requested


def resolve_dtype(requested: str, device: str, bf16_supported: bool) -> str:
    """``auto``: bfloat16 (or float16) on GPUs, float32 on CPU."""
    if requested != "auto":
        return requested
    if device.startswith("cuda"):
        return "bfloat16" if bf16_supported else "float16"
    return "float32"


#: Tasks whose transformers loaders place the model by ``device_map`` when given one (else on DEVICE).
DEVICE_MAP_TASKS = frozenset(
    {"text-generation", "chat", "text2text-generation", "summarization", "translation"}
    | {"image-text-to-text", "audio-text-to-text", "video-text-to-text"}
)


def multi_gpu_kwargs(task: str, device: str, gpu_count: int, vllm: bool, given: dict[str, Any]) -> dict[str, Any]:
    """What spreads the model over a pod's GPUs: vLLM's tensor parallelism, else transformers'
    ``device_map="auto"`` (for the loaders that honour it); nothing on one device or where the
    loading kwargs already decide."""
    if gpu_count <= 1 or not device.startswith("cuda"):
        return {}
    if vllm:
        return {} if "tensor_parallel_size" in given else tensor_parallel_kwargs(gpu_count)
    if task in DEVICE_MAP_TASKS and "device_map" not in given:
        return {"device_map": "auto"}
    return {}


@dataclass
class LoadProgress:
    """What ``/status`` reports while loading; written by the loading thread, read by the event loop."""

    phase: str = "starting"  # starting, importing, downloading, loading, warming_up, ready, failed
    download_percent: float = 0.0
    load_percent: float = 0.0
    error: str | None = None
    device: str | None = None
    dtype: str | None = None
    started_at: float = 0.0
    load_seconds: float | None = None
    clock: StartupClock = field(default_factory=StartupClock)  # the process's start-up phases

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def update(self, **changes: Any) -> None:
        with self._lock:
            for key, value in changes.items():
                setattr(self, key, value)
        if "phase" in changes or "load_percent" in changes:
            logger.info(
                "model load: %s (download %.0f%%, load %.0f%%)", self.phase, self.download_percent, self.load_percent
            )

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "phase": self.phase,
                "download_percent": round(self.download_percent, 1),
                "load_percent": round(self.load_percent, 1),
                "error": self.error,
                "device": self.device,
                "dtype": self.dtype,
                "load_seconds": self.load_seconds,
            }


class ModelIdError(ValueError):
    """A MODEL_ID that is neither a hub id nor a model directory under a model root."""


def local_model_dir(settings: RuntimeSettings) -> Path | None:
    """The directory a local MODEL_ID names, or None for a hub id (``org/name``, always a hub id).

    Any other MODEL_ID is a path that must resolve (symlinks and ``..`` followed) to an existing directory inside
    one of :meth:`RuntimeSettings.model_roots`; else :class:`ModelIdError`. So a MODEL_ID such as ``proc/self``
    is the hub id it looks like, and ``/etc`` or a symlink out of the cache is refused.
    """
    model_id = settings.model_id
    if is_model_id(model_id):
        return None
    roots = settings.model_roots()
    shown = ", ".join(str(root) for root in roots) or "none configured"
    rule = (
        "MODEL_ID must be a hub id (org/name) or a model directory under a model root "
        f"(CACHE_DIR, HF_HOME, MODEL_DIRS: {shown})"
    )
    if not model_id.strip() or "\x00" in model_id:
        raise ModelIdError(f"{rule}; got {model_id!r}")
    resolved = Path(model_id).expanduser().resolve()
    if not any(resolved.is_relative_to(root) for root in roots):
        raise ModelIdError(f"{rule}; {model_id!r} is not under one")
    if not resolved.is_dir():
        raise ModelIdError(f"{rule}; {model_id!r} is not a directory")
    return resolved


def download(settings: RuntimeSettings, progress: LoadProgress) -> Path:
    """A local model directory (see :func:`local_model_dir`) is used as is; a hub id is downloaded into the cache
    with byte progress."""
    local = local_model_dir(settings)
    if local is not None:
        progress.update(download_percent=100.0)
        return local
    from huggingface_hub import snapshot_download

    tqdm: Any = import_module("tqdm.auto").tqdm

    logged = {"decile": -1}

    class DownloadProgress(tqdm):  # type: ignore[misc]
        def update(self, n: float | None = 1) -> bool | None:
            shown: bool | None = super().update(n)
            if self.total:
                percent = min(100.0, 100.0 * self.n / self.total)
                progress.update(download_percent=percent)
                if int(percent // 10) > logged["decile"]:
                    logged["decile"] = int(percent // 10)
                    logger.info("model download: %.0f%% of %s", percent, settings.model_id)
            return shown

    progress.update(phase="downloading")
    path = snapshot_download(
        settings.model_id,
        cache_dir=str(settings.cache_dir) if settings.cache_dir else None,
        tqdm_class=DownloadProgress,
    )
    progress.update(download_percent=100.0)
    return Path(path)


def load_handler(settings: RuntimeSettings, progress: LoadProgress) -> Handler:
    """Blocking: runs in a thread at start-up. Raises on failure; the caller reports it on /health."""
    progress.update(started_at=time.monotonic())
    loader = resolve_loader(settings.task)  # an unknown task fails before any import or download
    local_model_dir(settings)  # so does a MODEL_ID that is neither a hub id nor under a model root
    progress.update(phase="importing")
    import_libraries(task_libraries(loader_module(settings.task)))
    import torch

    if settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)
    device = resolve_device(settings.device, torch.cuda.is_available())
    bf16 = device.startswith("cuda") and torch.cuda.is_bf16_supported()
    dtype = resolve_dtype(settings.dtype, device, bf16)
    if device.startswith("cuda"):
        torch.empty(1, device=device)  # the CUDA context, made now rather than inside the weights' load
    progress.clock.mark("imports")
    progress.update(device=device, dtype=dtype, load_percent=5.0)
    model_dir = download(settings, progress)
    progress.update(phase="loading", load_percent=10.0)
    given = dict(settings.model_loading_kwargs_json)
    vllm = settings.task in VLLM_TASKS and use_vllm(settings.engine, device)
    spread = multi_gpu_kwargs(settings.task, device, settings.gpu_count, vllm, given)
    if spread:
        logger.info("spreading the model over %d GPUs: %s", settings.gpu_count, spread)
    context = LoadContext(
        model_dir=model_dir,
        model_id=settings.model_id,
        task=settings.task,
        device=device,
        dtype=dtype,
        loading_kwargs={**given, **spread},
        trust_remote_code=settings.trust_remote_code,
        engine=settings.engine,
    )
    handler = loader(context)
    progress.clock.mark("weights")
    progress.update(phase="warming_up", load_percent=90.0)
    handler.warmup()
    progress.clock.mark("warmup")
    progress.update(phase="ready", load_percent=100.0, load_seconds=time.monotonic() - progress.started_at)
    return handler


def memory_report() -> dict[str, Any]:
    psutil: Any = import_module("psutil")
    report: dict[str, Any] = {"rss_bytes": psutil.Process().memory_info().rss}
    try:
        import torch
    except ImportError:
        return report
    if torch.cuda.is_available():
        report["gpu_allocated_bytes"] = torch.cuda.memory_allocated()
        report["gpu_reserved_bytes"] = torch.cuda.memory_reserved()
        free, total = torch.cuda.mem_get_info()
        report["gpu_free_bytes"], report["gpu_total_bytes"] = free, total
    return report
