from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from modelcluster.api.modelcluster import ModelClusterSpec
from modelcluster.api.tasks import TASKS
from modelcluster.catalog import Catalog, CatalogError, CatalogFileError, load_catalog, resolve
from modelcluster.catalog.resolve import with_spec


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


def test_default_catalog_serves_every_task_of_the_seeds(catalog: Catalog) -> None:
    assert sorted(TASKS) == catalog.tasks
    assert len(TASKS) == len(set(TASKS))


def test_tiers_are_the_hosted_service_tiers(catalog: Catalog) -> None:
    assert [tier.gpu_memory_gb for tier in catalog.tiers] == [16, 24, 64, 96, 128, 192, 320, 640]
    gpus = [tier.gpus for tier in catalog.tiers]
    assert gpus == sorted(gpus) and gpus[0] >= 1


@pytest.mark.parametrize(
    ("params", "tier"),
    [
        (124_000_000, "micro"),
        (4_000_000_000, "micro"),
        (7_600_000_000, "xs"),
        (13_000_000_000, "sm"),
        (70_000_000_000, "xl"),
        (10**13, "super"),
    ],
)
def test_tier_for_params(catalog: Catalog, params: int, tier: str) -> None:
    assert catalog.tier_for_params(params).name == tier


def test_known_model(catalog: Catalog) -> None:
    placement = resolve(catalog, "openai-community/gpt2", None)
    assert placement.task == "text-generation"
    assert placement.family == "llm"
    assert placement.image.startswith("ghcr.io/modelcluster/runtime-llm:")
    assert placement.tier.name == "micro"
    assert placement.known


def test_known_model_case_insensitive_but_id_kept(catalog: Catalog) -> None:
    placement = resolve(catalog, "OpenAI-Community/GPT2", None)
    assert placement.model_id == "OpenAI-Community/GPT2"
    assert placement.task == "text-generation"


def test_spec_task_wins(catalog: Catalog) -> None:
    assert resolve(catalog, "openai-community/gpt2", "feature-extraction").family == "text"


def test_unknown_model_needs_a_task(catalog: Catalog) -> None:
    with pytest.raises(CatalogError) as raised:
        resolve(catalog, "someone/unknown-model", None)
    assert raised.value.reason == "UnknownModel"
    assert "spec.task" in raised.value.message
    placement = resolve(catalog, "someone/unknown-model", "chat")
    assert placement.tier.name == catalog.default_tier
    assert not placement.known


def test_unknown_task(catalog: Catalog) -> None:
    with pytest.raises(CatalogError) as raised:
        resolve(catalog, "someone/model", "juggling")
    assert raised.value.reason == "UnknownTask"


def test_extend_from_file_and_configmap_dir(tmp_path: Path) -> None:
    (tmp_path / "10-models.yaml").write_text(
        "models:\n  - {id: acme/big-llm, task: chat, params: 70000000000}\n"
        "  - {id: openai-community/gpt2, task: text-generation, tier: xs}\n",
        encoding="utf-8",
    )
    (tmp_path / "20-images.json").write_text(
        json.dumps({"families": {"llm": {"image": "registry.local/gen:1", "tasks": ["chat", "text-generation"]}}}),
        encoding="utf-8",
    )
    (tmp_path / "..data").mkdir()  # what a ConfigMap mount looks like
    (tmp_path / "notes.txt").write_text("ignored", encoding="utf-8")
    catalog = load_catalog([tmp_path])
    assert resolve(catalog, "acme/big-llm", None).tier.name == "xl"
    assert resolve(catalog, "acme/big-llm", None).image == "registry.local/gen:1"
    assert resolve(catalog, "openai-community/gpt2", None).tier.name == "xs"
    assert resolve(catalog, "google/flan-t5-base", None).task == "text2text-generation"
    single = load_catalog([tmp_path / "10-models.yaml"])
    assert single.model("acme/big-llm") is not None


def test_without_default(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "families: {text: {image: i, tasks: [fill-mask]}}\n"
        "tiers: [{name: cpu, gpuMemoryGB: 1, gpus: 0, cpu: '1', memory: 1Gi, cache: 1Gi}]\n"
        "defaultTier: cpu\n",
        encoding="utf-8",
    )
    catalog = load_catalog([path], include_default=False)
    assert catalog.tasks == ["fill-mask"]


@pytest.mark.parametrize(
    "text",
    [
        "models: [{id: nope, task: chat}]",
        "models: [{id: a/b, task: juggling}]",
        "models: [{id: a/b, task: chat, tier: huge}]",
        "defaultTier: huge",
        "families: {extra: {image: x, tasks: [chat]}}",
    ],
)
def test_invalid_catalogs(tmp_path: Path, text: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValidationError):
        load_catalog([path])


@pytest.mark.parametrize("text", ["[1, 2]", "a: [", "just a string"])
def test_unreadable_catalogs(tmp_path: Path, text: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(CatalogFileError):
        load_catalog([path])


def test_missing_source(tmp_path: Path) -> None:
    with pytest.raises(CatalogFileError):
        load_catalog([tmp_path / "absent.yaml"])


def test_a_model_may_name_its_own_image(catalog: Catalog) -> None:
    assert resolve(catalog, "modelcluster/tiny-chat", None).image == "modelcluster.dev/local/runtime-llm:0.1.0"
    assert resolve(catalog, "openai-community/gpt2", None).image == "ghcr.io/modelcluster/runtime-llm:0.1.0"


# --- the shared hub token --------------------------------------------------------------------


def _token_catalog(tmp_path: Path) -> Catalog:
    (tmp_path / "catalog.yaml").write_text(
        "tokenSecret: {name: shared-hub-token}\n"
        "models:\n"
        "  - {id: acme/listed, task: chat, params: 1000000}\n"
        "  - {id: meta-llama/gated, task: chat, params: 1000000, tokenSecret: {name: llama}}\n",
        encoding="utf-8",
    )
    return load_catalog([tmp_path])


def test_the_shared_token_reaches_the_models_the_catalog_lists(tmp_path: Path) -> None:
    catalog = _token_catalog(tmp_path)
    listed = resolve(catalog, "acme/listed", None).token_secret
    assert listed is not None and listed.name == "shared-hub-token"
    assert resolve(catalog, "ACME/Listed", None).token_secret == listed  # listed, whatever the case
    own = resolve(catalog, "meta-llama/gated", None).token_secret
    assert own is not None and own.name == "llama"


@pytest.mark.parametrize("model_id", ["someone/private-repo", "acme/listed-not", "meta-llama/other"])
@pytest.mark.parametrize("task", ["chat", "text-classification"])
def test_a_model_the_catalog_does_not_list_never_gets_the_shared_token(
    tmp_path: Path, model_id: str, task: str
) -> None:
    placement = resolve(_token_catalog(tmp_path), model_id, task)
    assert not placement.known
    assert placement.token_secret is None


def test_a_spec_token_still_reaches_a_model_the_catalog_does_not_list(tmp_path: Path) -> None:
    spec = ModelClusterSpec.model_validate(
        {"model": "someone/private-repo", "task": "chat", "tokenSecret": {"name": "mine"}}
    )
    placement = with_spec(resolve(_token_catalog(tmp_path), spec.model, spec.task), spec)
    assert placement.token_secret is not None and placement.token_secret.name == "mine"
