"""Placing the tiny models into a hub cache: once, with a progress line; again, without touching them."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest

from modelcluster.devcluster import tiny_builders, tiny_tasks
from modelcluster.devcluster.offline_models import hub_cache_repo

#: Two of the builders, to keep the test short (every builder is exercised by the other runtime tests).
SOME = (
    tiny_tasks.TinyModel("fill-mask", partial(tiny_builders.bert, task="fill-mask")),
    tiny_tasks.TinyModel("image-classification", tiny_builders.vit),
)


def files(hf_home: Path) -> dict[str, tuple[int, int, bytes]]:
    found = {}
    for model in SOME:
        repo = hub_cache_repo(hf_home, model.model_id)
        for path in repo.rglob("*"):
            if path.is_file():
                found[str(path.relative_to(hf_home))] = (path.stat().st_ino, path.stat().st_mtime_ns, path.read_bytes())
    return found


@pytest.fixture
def some(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tiny_tasks, "TINY_MODELS", SOME)


@pytest.mark.usefixtures("some")
def test_placed_once_with_a_progress_line_then_kept(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert tiny_tasks.seed_tiny_models(tmp_path) == [
        "modelcluster/tiny-fill-mask",
        "modelcluster/tiny-image-classification",
    ]
    logged = capsys.readouterr().err
    assert "generating 2 tiny models" in logged and "generating 2 tiny models done in" in logged
    first = files(tmp_path)
    assert any(name.endswith("model.safetensors") for name in first)
    assert tiny_tasks.seed_tiny_models(tmp_path)
    assert "generating" not in capsys.readouterr().err
    assert files(tmp_path) == first


@pytest.mark.usefixtures("some")
def test_generation_is_deterministic(tmp_path: Path) -> None:
    tiny_tasks.seed_tiny_models(tmp_path / "one")
    tiny_tasks.seed_tiny_models(tmp_path / "two")
    one = {name.split("/", 1)[1]: content for name, (_, _, content) in files(tmp_path / "one").items()}
    two = {name.split("/", 1)[1]: content for name, (_, _, content) in files(tmp_path / "two").items()}
    assert one == two and one


def test_without_the_runtime_extra_nothing_is_placed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(tiny_tasks, "LIBRARIES", ("torch", "no-such-package-here"))
    assert tiny_tasks.seed_tiny_models(tmp_path) == []
    assert "tiny models not generated" in capsys.readouterr().err
    assert not (tmp_path / "hub").exists()
