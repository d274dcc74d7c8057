"""KWOK stage configuration: upstream's stages, minus pods whose containers run as local processes."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

# Upstream stage files (relative to KWOK's kustomize/stage) that the local cluster uses.
STAGE_FILES = (
    "node/fast/node-initialize.yaml",
    "node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
    "pod/fast/pod-ready.yaml",
    "pod/fast/pod-complete.yaml",
    "pod/fast/pod-delete.yaml",
)
IMAGE_QUERY = ".spec.containers.[] | .image"


def exclude_images(stage: dict[str, Any], images: list[str]) -> dict[str, Any]:
    """Return a copy of a Pod stage that leaves pods running any of ``images`` alone."""
    if not images or stage["spec"]["resourceRef"]["kind"] != "Pod":
        return stage
    result = copy.deepcopy(stage)
    expressions = result["spec"].setdefault("selector", {}).setdefault("matchExpressions", [])
    expressions.append({"key": IMAGE_QUERY, "operator": "NotIn", "values": sorted(images)})
    return result


def stage_documents(stage_root: Path, process_images: list[str]) -> list[dict[str, Any]]:
    documents = [yaml.safe_load((stage_root / name).read_text()) for name in STAGE_FILES]
    return [exclude_images(document, process_images) for document in documents]
