"""Pure builders: rollout strategy, model cache, GPU placement, hub token and pull secrets in the pod template."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from modelcluster.api import ModelCache, ModelClusterSpec, Rollout
from modelcluster.catalog import Catalog, load_catalog, resolve, with_spec
from modelcluster.operator.builders.deployment import build_deployment
from modelcluster.operator.builders.model_cache import build_cache_claim, cache_claim_name
from modelcluster.operator.builders.pod import TERMINATION_MESSAGE_POLICY, build_pod_template, gpu_node_affinity
from modelcluster.operator.builders.workload import Owner, PodOptions, Workload

OPTIONS = PodOptions()
CATALOG: Catalog = load_catalog()
OWNER = Owner(name="m-abc", namespace="tenant", uid="uid-1")


def workload(model: str = "openai-community/gpt2", catalog: Catalog = CATALOG, **spec: Any) -> Workload:
    parsed = ModelClusterSpec.model_validate({"model": model, **spec})
    return Workload(OWNER, with_spec(resolve(catalog, parsed.model, parsed.task), parsed))


def pod_spec(work: Workload) -> dict[str, Any]:
    spec: dict[str, Any] = build_deployment(work, OPTIONS)["spec"]["template"]["spec"]
    return spec


def env_of(work: Workload) -> dict[str, Any]:
    container = pod_spec(work)["containers"][0]
    return {item["name"]: item.get("value", item.get("valueFrom")) for item in container["env"]}


def strategy(work: Workload) -> dict[str, Any]:
    rolling: dict[str, Any] = build_deployment(work, OPTIONS)["spec"]["strategy"]
    return rolling


def catalog_file(tmp_path: Path, text: str) -> Catalog:
    path = tmp_path / "catalog.yaml"
    path.write_text(text, encoding="utf-8")
    return load_catalog([path])


# --- rollouts ----------------------------------------------------------------------------------


def test_default_rollout_surges_one_pod_and_keeps_every_old_one() -> None:
    assert strategy(workload()) == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}


def test_spec_rollout_overrides_the_default() -> None:
    work = workload(rollout={"maxSurge": 0, "maxUnavailable": 1})
    assert strategy(work)["rollingUpdate"] == {"maxSurge": 0, "maxUnavailable": 1}


def test_tier_and_model_rollouts_from_the_catalog_in_that_order(tmp_path: Path) -> None:
    catalog = catalog_file(
        tmp_path,
        "tiers: [{name: micro, gpuMemoryGB: 16, gpus: 1, cpu: '4', memory: 16Gi, cache: 32Gi,"
        " rollout: {maxSurge: 0, maxUnavailable: 1}}]\n"
        "models: [{id: acme/pinned, task: chat, tier: micro, rollout: {maxSurge: 2, maxUnavailable: 1}}]\n",
    )
    assert strategy(workload("acme/other", catalog, task="chat"))["rollingUpdate"] == {
        "maxSurge": 0,
        "maxUnavailable": 1,
    }
    assert strategy(workload("acme/pinned", catalog))["rollingUpdate"] == {"maxSurge": 2, "maxUnavailable": 1}
    spec = {"rollout": {"maxSurge": 1, "maxUnavailable": 0}}
    assert strategy(workload("acme/pinned", catalog, **spec))["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}


def test_a_rollout_that_cannot_progress_is_refused() -> None:
    with pytest.raises(ValidationError, match="cannot both be 0"):
        Rollout(max_surge=0, max_unavailable=0)


# --- model cache --------------------------------------------------------------------------------


def volumes(work: Workload) -> dict[str, dict[str, Any]]:
    return {volume["name"]: volume for volume in pod_spec(work)["volumes"]}


def cache_mount(work: Workload) -> str:
    mounts = {m["mountPath"]: m["name"] for m in pod_spec(work)["containers"][0]["volumeMounts"]}
    return mounts[OPTIONS.cache_dir]


def test_cache_is_an_empty_dir_by_default_and_no_claim_is_made() -> None:
    work = workload()
    assert "emptyDir" in volumes(work)[cache_mount(work)]
    assert cache_claim_name(work) is None
    assert build_cache_claim(work) is None


def test_a_sized_cache_is_a_claim_per_cluster_owned_by_it_and_mounted_at_the_cache_dir() -> None:
    work = workload(cache={"size": "100Gi", "storageClassName": "fast-ssd"})
    claim = build_cache_claim(work)
    assert claim is not None
    assert claim["kind"] == "PersistentVolumeClaim"
    assert claim["metadata"]["name"] == "m-abc-model-cache"
    assert claim["metadata"]["namespace"] == "tenant"
    assert claim["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert claim["spec"] == {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": "100Gi"}},
        "storageClassName": "fast-ssd",
    }
    assert volumes(work)[cache_mount(work)] == {
        "name": "model-cache",
        "persistentVolumeClaim": {"claimName": "m-abc-model-cache"},
    }
    # A ReadWriteOnce volume attaches to one node: the cluster's pods (a surge pod too) share that node.
    term = pod_spec(work)["affinity"]["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert term["labelSelector"]["matchLabels"]["app.kubernetes.io/instance"] == "m-abc"


def test_a_named_shared_claim_is_mounted_and_not_created() -> None:
    work = workload(cache={"claimName": "shared-models"})
    assert build_cache_claim(work) is None
    assert volumes(work)[cache_mount(work)]["persistentVolumeClaim"] == {"claimName": "shared-models"}
    assert "podAffinity" not in pod_spec(work).get("affinity", {})


def test_catalog_wide_shared_claim_applies_unless_the_spec_names_another(tmp_path: Path) -> None:
    catalog = catalog_file(tmp_path, "cache: {claimName: platform-models}\n")
    assert cache_claim_name(workload(catalog=catalog)) == "platform-models"
    assert cache_claim_name(workload(catalog=catalog, cache={"claimName": "mine"})) == "mine"


def test_a_claim_only_one_pod_may_mount_rolls_one_down_one_up() -> None:
    work = workload(cache={"size": "10Gi", "accessMode": "ReadWriteOncePod"})
    assert strategy(work)["rollingUpdate"] == {"maxSurge": 0, "maxUnavailable": 1}


@pytest.mark.parametrize(
    "cache",
    [{}, {"size": "1Gi", "claimName": "x"}, {"claimName": "x", "storageClassName": "fast"}, {"size": "lots"}],
    ids=["neither", "both", "class-for-existing-claim", "bad-size"],
)
def test_invalid_caches_are_refused(cache: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        ModelCache.model_validate(cache)


# --- GPU placement -------------------------------------------------------------------------------


def on_tier(tier: str) -> Workload:
    return Workload(OWNER, replace(resolve(CATALOG, "acme/some-model", "chat"), tier=CATALOG.tier(tier)))


def memory_floor(work: Workload) -> int:
    affinity = gpu_node_affinity(work, OPTIONS)
    assert affinity is not None
    (term,) = affinity["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    (memory,) = [e for e in term["matchExpressions"] if e["key"] == "nvidia.com/gpu.memory"]
    assert memory["operator"] == "Gt"
    return int(memory["values"][0]) + 1


# GPU feature discovery's nvidia.com/gpu.memory (MiB) of common devices.
L4, A10G, L40S, A100_40GB, H100_80GB, A100_80GB = 23034, 23028, 46068, 40960, 81559, 81920


@pytest.mark.parametrize(
    ("tier", "fits", "too_small"),
    [
        ("micro", [L4, A10G], [8192]),
        ("xs", [L4, A10G, H100_80GB], [16384]),
        ("sm", [H100_80GB, A100_80GB], [L4, L40S, A100_40GB]),
        ("md", [L40S, H100_80GB], [L4, A100_40GB]),
        ("xxl", [H100_80GB, A100_80GB], [L40S]),
        ("super", [H100_80GB, A100_80GB], [A100_40GB]),
    ],
)
def test_tier_memory_per_gpu_selects_devices_that_hold_it(tier: str, fits: list[int], too_small: list[int]) -> None:
    floor = memory_floor(on_tier(tier))
    assert all(memory >= floor for memory in fits)
    assert all(memory < floor for memory in too_small)


def test_gpu_affinity_sits_beside_the_gpu_node_selector_and_toleration() -> None:
    spec = pod_spec(workload("Nexusflow/NexusRaven-V2-13B"))
    assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    terms = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms == [{"matchExpressions": [{"key": "nvidia.com/gpu.memory", "operator": "Gt", "values": ["61034"]}]}]


def test_tier_products_become_an_in_expression(tmp_path: Path) -> None:
    catalog = catalog_file(
        tmp_path,
        "tiers: [{name: micro, gpuMemoryGB: 16, gpus: 1, cpu: '4', memory: 16Gi, cache: 32Gi,"
        " gpuProducts: [NVIDIA-L4, NVIDIA-A10G]}]\n",
    )
    affinity = gpu_node_affinity(workload("acme/x", catalog, task="chat"), OPTIONS)
    assert affinity is not None
    expressions = affinity["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]["matchExpressions"]
    assert {"key": "nvidia.com/gpu.product", "operator": "In", "values": ["NVIDIA-L4", "NVIDIA-A10G"]} in expressions


def test_cpu_tier_has_no_gpu_affinity_and_no_gpu_count(tmp_path: Path) -> None:
    catalog = catalog_file(
        tmp_path, "tiers: [{name: cpu, gpuMemoryGB: 1, gpus: 0, cpu: '1', memory: 2Gi, cache: 4Gi}]\ndefaultTier: cpu\n"
    )
    work = workload("acme/tiny", catalog, task="fill-mask")
    assert gpu_node_affinity(work, OPTIONS) is None
    assert "affinity" not in pod_spec(work)
    assert "GPU_COUNT" not in env_of(work)


@pytest.mark.parametrize(("tier", "gpus"), [("micro", "1"), ("md", "2"), ("xl", "4"), ("super", "8")])
def test_the_gpu_count_reaches_the_runtime(tier: str, gpus: str) -> None:
    work = on_tier(tier)
    assert env_of(work)["GPU_COUNT"] == gpus
    assert pod_spec(work)["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == gpus


# --- gated models, private images, load failures --------------------------------------------------


def test_token_secret_becomes_hf_token_from_the_secret() -> None:
    env = env_of(workload(tokenSecret={"name": "hub-token", "key": "hf"}))
    assert env["HF_TOKEN"] == {"secretKeyRef": {"name": "hub-token", "key": "hf"}}
    assert "HF_TOKEN" not in env_of(workload())


def test_catalog_token_secret_for_a_gated_model(tmp_path: Path) -> None:
    catalog = catalog_file(tmp_path, "models: [{id: meta-llama/gated, task: chat, tokenSecret: {name: llama}}]\n")
    assert env_of(workload("meta-llama/gated", catalog))["HF_TOKEN"] == {
        "secretKeyRef": {"name": "llama", "key": "token"}
    }


def test_pull_secrets_from_spec_replace_the_catalogs(tmp_path: Path) -> None:
    catalog = catalog_file(
        tmp_path, "imagePullSecrets: [platform]\nfamilies: {llm: {image: reg.example/llm:1, imagePullSecrets: [llm]}}\n"
    )
    assert pod_spec(workload(catalog=catalog))["imagePullSecrets"] == [{"name": "llm"}, {"name": "platform"}]
    own = workload(catalog=catalog, imagePullSecrets=[{"name": "mine"}])
    assert pod_spec(own)["imagePullSecrets"] == [{"name": "mine"}]
    assert "imagePullSecrets" not in pod_spec(workload())


def test_runtime_container_reports_its_termination_message() -> None:
    container = build_pod_template(workload(), {}, OPTIONS)["spec"]["containers"][0]
    assert container["terminationMessagePath"] == "/dev/termination-log"
    assert container["terminationMessagePolicy"] == TERMINATION_MESSAGE_POLICY == "FallbackToLogsOnError"
