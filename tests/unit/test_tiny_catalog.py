"""The tiny model of every task: in the catalog under ``modelcluster/tiny-<task>`` with its family's image, which the
local cluster runs as a process; and ``--hub-models``, which runs every family's image."""

from __future__ import annotations

from pathlib import Path

from modelcluster.api.tasks import TASKS, task_info
from modelcluster.catalog import load_catalog, resolve
from modelcluster.devcluster import tiny_tasks
from modelcluster.devcluster.config import PodCommand, load_pod_commands
from modelcluster.devcluster.hub_models import hub_model_commands

POD_COMMANDS = Path(__file__).resolve().parents[2] / "e2e" / "pod-commands.yaml"


def test_every_task_but_sentence_similarity_has_a_tiny_model() -> None:
    assert set(tiny_tasks.by_task()) == set(TASKS) - {"sentence-similarity"}
    for task, model_id in tiny_tasks.by_task().items():
        assert model_id in (f"modelcluster/tiny-{task}", "modelcluster/tiny-chat")


def test_the_catalog_lists_each_with_its_family_image_which_runs_as_a_local_runtime() -> None:
    catalog = load_catalog()
    commands = load_pod_commands(POD_COMMANDS)
    for task, model_id in tiny_tasks.by_task().items():
        placement = resolve(catalog, model_id, None)
        family = task_info(task).family
        assert (placement.task, placement.family, placement.tier.name) == (task, family, "micro")
        expected = (
            catalog.families[family].image if family == "text" else f"modelcluster.dev/local/runtime-{family}:0.1.0"
        )
        assert placement.image == expected, model_id
        command = commands[placement.image]
        assert command.command == ["modelcluster", "runtime"]
        assert (command.env["HF_HUB_OFFLINE"], command.env["DEVICE"]) == ("1", "cpu")


def test_other_models_of_those_families_stay_simulated_by_default() -> None:
    catalog = load_catalog()
    commands = load_pod_commands(POD_COMMANDS)
    for model_id in ("openai-community/gpt2", "google/vit-base-patch16-224", "suno/bark-small"):
        assert resolve(catalog, model_id, None).image not in commands


def test_the_revision_follows_the_builders_and_the_libraries() -> None:
    model = tiny_tasks.TINY_MODELS[0]
    versions = {"torch": "1", "transformers": "2", "tokenizers": "3", "diffusers": "4"}
    digest = tiny_tasks.sources_digest()
    assert tiny_tasks.recipe(model, digest, versions) == tiny_tasks.recipe(model, digest, dict(versions))
    assert tiny_tasks.recipe(model, digest, versions) != tiny_tasks.recipe(model, "other", versions)
    assert tiny_tasks.recipe(model, digest, versions) != tiny_tasks.recipe(model, digest, {**versions, "torch": "9"})
    assert tiny_tasks.recipe(model, digest, versions) != tiny_tasks.recipe(tiny_tasks.TINY_MODELS[1], digest, versions)


def test_hub_models_run_every_family_image_and_keep_the_mapped_ones() -> None:
    catalog = load_catalog()
    mapped = load_pod_commands(POD_COMMANDS)
    commands = hub_model_commands(catalog, mapped)
    for family in catalog.families.values():
        assert commands[family.image].command == ["modelcluster", "runtime"]
        assert commands[family.image].env["HF_HOME"] == "${MODELCLUSTER_CACHE}/hf-home"
    for image, command in mapped.items():
        assert commands[image] == command
    for model_id in ("openai-community/gpt2", "google/vit-base-patch16-224", "suno/bark-small"):
        assert isinstance(commands[resolve(catalog, model_id, None).image], PodCommand)
