"""modelcluster/tiny-chat: generated into a hub cache offline, then served by the real runtime from it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from runtime_support import ServerHandle

from modelcluster.catalog import load_catalog, resolve
from modelcluster.devcluster import tiny_models
from modelcluster.devcluster.config import load_pod_commands
from modelcluster.devcluster.offline_models import hub_cache_repo, revision_of
from modelcluster.devcluster.tiny_models import MODEL_ID, seed_tiny_chat

POD_COMMANDS = Path(__file__).resolve().parents[2] / "e2e" / "pod-commands.yaml"


def snapshot_files(hf_home: Path) -> dict[str, tuple[int, int]]:
    snapshots = hub_cache_repo(hf_home, MODEL_ID) / "snapshots"
    return {
        str(path.relative_to(snapshots)): (path.stat().st_ino, path.stat().st_mtime_ns) for path in snapshots.rglob("*")
    }


@pytest.fixture(scope="module")
def hf_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("hf-home")
    assert seed_tiny_chat(home) == MODEL_ID
    return home


@pytest.fixture(scope="module")
def served(serve: Callable[..., ServerHandle], hf_home: Path) -> dict[str, ServerHandle]:
    from huggingface_hub import constants

    assert constants.HF_HUB_OFFLINE  # the hub id must resolve from the cache alone
    return {task: serve(MODEL_ID, task, cache_dir=hf_home / "hub") for task in ("chat", "text-generation")}


def test_the_hub_cache_holds_one_snapshot_named_by_the_recipe(hf_home: Path) -> None:
    repo = hub_cache_repo(hf_home, MODEL_ID)
    revision = revision_of(tiny_models.recipe())
    assert (repo / "refs" / "main").read_text() == revision
    assert [path.name for path in (repo / "snapshots").iterdir()] == [revision]
    names = {path.name for path in (repo / "snapshots" / revision).iterdir()}
    assert {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json"} <= names


def test_generating_again_is_a_no_op(hf_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = snapshot_files(hf_home)
    assert seed_tiny_chat(hf_home) == MODEL_ID
    assert snapshot_files(hf_home) == before
    assert "generating" not in capsys.readouterr().err


def test_generation_is_deterministic(hf_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert seed_tiny_chat(tmp_path) == MODEL_ID
    assert f"generating {MODEL_ID} done in" in capsys.readouterr().err
    revision = revision_of(tiny_models.recipe())
    for name in ("model.safetensors", "tokenizer.json", "generation_config.json"):
        first = hub_cache_repo(hf_home, MODEL_ID) / "snapshots" / revision / name
        second = hub_cache_repo(tmp_path, MODEL_ID) / "snapshots" / revision / name
        assert first.read_bytes() == second.read_bytes(), name


def test_without_the_runtime_extra_nothing_is_placed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def no_torch(directory: Path) -> int:
        raise ModuleNotFoundError("No module named 'torch'")

    monkeypatch.setattr(tiny_models, "write_tiny_chat", no_torch)
    assert seed_tiny_chat(tmp_path) is None
    assert "not generated: No module named 'torch'" in capsys.readouterr().err
    assert list((hub_cache_repo(tmp_path, MODEL_ID) / "snapshots").iterdir()) == []
    assert not (hub_cache_repo(tmp_path, MODEL_ID) / "refs").exists()


def test_unprintable_tokens_are_suppressed_except_the_allowed() -> None:
    pieces = {0: "", 1: "the cat", 2: "\x00", 3: "\u00e9", 4: "", 5: "\ufffd", 6: " "}
    assert tiny_models.unprintable_token_ids(pieces, allowed={4}) == [0, 2, 3, 5]


def test_the_catalog_knows_the_model_and_the_local_system_runs_its_image() -> None:
    catalog = load_catalog()
    placement = resolve(catalog, MODEL_ID, None)
    assert (placement.task, placement.family) == ("chat", "llm")
    known = catalog.model(MODEL_ID)
    assert known is not None
    assert known.params == tiny_models.parameter_count(tiny_models.causal_lm(tiny_models.bpe_tokenizer()))
    command = load_pod_commands(POD_COMMANDS)[placement.image]
    assert command.command == ["modelcluster", "runtime"]
    assert command.env["HF_HUB_OFFLINE"] == "1"
    assert command.env["DEVICE"] == "cpu"


def test_chat_answers_as_the_assistant(served: dict[str, ServerHandle]) -> None:
    messages = [{"role": "user", "content": "Hello, who are you?"}]
    with served["chat"].client() as client:
        response = client.post("/run", json={"messages": messages})
        assert response.status_code == 200, response.text
        output = response.json()["output"]
        assert set(output) == {"role", "content"}
        assert output["role"] == "assistant"
        assert isinstance(output["content"], str) and output["content"]
        short = client.post("/run", json={"messages": messages, "params": {"max_tokens": 4}}).json()["output"]
        assert short["content"]
        assert output["content"].startswith(short["content"])  # greedy decoding of fixed weights
        assert len(short["content"]) < len(output["content"])


def test_text_generation_continues_the_prompt(served: dict[str, ServerHandle]) -> None:
    with served["text-generation"].client() as client:
        response = client.post("/run", json={"text": "the cat", "params": {"max_new_tokens": 16}})
        assert response.status_code == 200, response.text
        output = response.json()["output"]
        assert isinstance(output, str)
        assert output.startswith("the cat") and len(output) > len("the cat")


def test_raw_stream_of_text_generation(served: dict[str, ServerHandle]) -> None:
    params = {"max_new_tokens": 16, "return_full_text": False}
    with served["text-generation"].client() as client:
        plain = client.post("/run", json={"text": "once upon", "params": params}).json()["output"]
        with client.stream("POST", "/run", json={"text": "once upon", "params": params, "stream": True}) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/plain")
            chunks = [chunk for chunk in response.iter_text() if chunk]
    assert len(chunks) >= 1
    assert "".join(chunks) == plain
    assert plain
