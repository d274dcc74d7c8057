"""Runtime servers on tiny models for the security tests: real uvicorn servers on loopback ports (the helpers of
``tests/runtime``)."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "runtime"))

from runtime_support import ServerHandle, free_port

from modelcluster.devcluster import tiny_builders

from support import eventually

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def security_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The model root of these tests' servers (``MODEL_DIRS``)."""
    return tmp_path_factory.mktemp("security-models")


@pytest.fixture(scope="session")
def start_runtime() -> Iterator[Callable[..., ServerHandle]]:
    """Start a runtime server for ``model_id`` and ``task`` with settings ``overrides``; stopped at session end."""
    import uvicorn

    from modelcluster.runtime.app import create_app
    from modelcluster.runtime.settings import RuntimeSettings

    started: list[ServerHandle] = []

    def start(model_id: Path | str, task: str, wait_ready: bool = True, **overrides: Any) -> ServerHandle:
        port = free_port()
        settings = RuntimeSettings(model_id=str(model_id), task=task, port=port, device="cpu", **overrides)
        server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
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

        eventually(answering, timeout=120, what=f"{task} server")
        return handle

    yield start
    for handle in started:
        handle.server.should_exit = True
    for handle in started:
        handle.thread.join(timeout=10)


@pytest.fixture(scope="session")
def vit_server(start_runtime: Callable[..., ServerHandle], security_models: Path) -> ServerHandle:
    """image-classification on a tiny random ViT (32x32 inputs)."""
    return start_runtime(
        tiny_builders.vit(security_models / "vit"), "image-classification", model_dirs=[security_models]
    )


@pytest.fixture(scope="session")
def audio_server(start_runtime: Callable[..., ServerHandle], security_models: Path) -> ServerHandle:
    """audio-classification on a tiny random wav2vec2 (16 kHz)."""
    directory = tiny_builders.wav2vec2_classifier(security_models / "wav2vec2")
    return start_runtime(directory, "audio-classification", model_dirs=[security_models])
