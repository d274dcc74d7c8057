"""Keep the project's image store bounded: each image keeps its last build's layers, nothing older.

Every build that changes a step makes new layers and leaves the images it replaced in the store, untagged (a
change to a runtime's libraries, several gigabytes), so a store that only grows fills a disk in a few builds.
A successful build records the images its steps used or made (its *chain*, one file per image name under
``<cache>/images/chains``); a prune removes every untagged image outside the chains and every working
container a killed or failed build left behind. Tagged images are never removed.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from modelcluster.devcluster.binaries import log

# buildah names a step's image by 11 hex digits ("--> 20f527d33c4"), a cached one in full.
SHORT_ID = 11
STEP_ID = re.compile(r"^--> (?:Using cache )?([0-9a-f]{11,64})$")
FINAL_ID = re.compile(r"^([0-9a-f]{64})$")
BUILD_LEFTOVER = re.compile(r"working-container(?:-\d+)?$")


@dataclass(frozen=True)
class StoredImage:
    id: str
    names: tuple[str, ...]


@dataclass(frozen=True)
class StoredContainer:
    id: str
    name: str


def step_image_id(line: str) -> str | None:
    """The image a build step used or made, from one line of ``buildah build`` output, shortened."""
    found = STEP_ID.match(line.strip()) or FINAL_ID.match(line.strip())
    return found.group(1)[:SHORT_ID] if found else None


def garbage(images: Sequence[StoredImage], keep: Iterable[str]) -> list[str]:
    """The untagged images outside ``keep`` (ids of any length), oldest first as listed."""
    kept = {key[:SHORT_ID] for key in keep}
    return [image.id for image in images if not image.names and image.id[:SHORT_ID] not in kept]


def build_leftovers(containers: Sequence[StoredContainer]) -> list[str]:
    """Working containers of builds that did not finish (``buildah build`` removes its own on success)."""
    return [container.id for container in containers if BUILD_LEFTOVER.search(container.name)]


def chain_file(root: Path, image: str) -> Path:
    return root / "chains" / re.sub(r"[^A-Za-z0-9_.-]", "_", image)


def record_chain(root: Path, image: str, ids: Iterable[str]) -> None:
    """The images ``image``'s last successful build used or made; the previous record is replaced."""
    path = chain_file(root, image)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{key}\n" for key in sorted(set(ids))))


def recorded_chains(root: Path) -> set[str]:
    folder = root / "chains"
    if not folder.is_dir():
        return set()
    return {line.strip() for path in folder.iterdir() for line in path.read_text().splitlines() if line.strip()}


def _listed(store: list[str], what: str) -> list[dict[str, object]]:
    done = subprocess.run(
        ["buildah", *store, what, *(["--all"] if what == "images" else []), "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0 or not done.stdout.strip():
        return []
    listed = json.loads(done.stdout)
    return listed if isinstance(listed, list) else []


def stored_images(store: list[str]) -> list[StoredImage]:
    return [
        StoredImage(str(entry["id"]), tuple(str(name) for name in entry.get("names") or ()))  # type: ignore[attr-defined]
        for entry in _listed(store, "images")
    ]


def stored_containers(store: list[str]) -> list[StoredContainer]:
    listed = _listed(store, "containers")
    return [StoredContainer(str(entry["id"]), str(entry.get("containername", ""))) for entry in listed]


def free_bytes(root: Path) -> int:
    root.mkdir(parents=True, exist_ok=True)
    return shutil.disk_usage(root).free


def prune(root: Path, store: list[str]) -> None:
    """Remove build leftovers and the untagged images no recorded chain holds; one progress line."""
    before = free_bytes(root)
    containers = build_leftovers(stored_containers(store))
    for container in containers:
        subprocess.run(["buildah", *store, "rm", container], capture_output=True, check=False)
    doomed = garbage(stored_images(store), recorded_chains(root))
    refused: list[str] = []
    for image in doomed:
        done = subprocess.run(["buildah", *store, "rmi", image], capture_output=True, text=True, check=False)
        if done.returncode != 0 and "image not known" not in done.stderr:
            refused.append(f"{image}: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else 'refused'}")
    if containers or doomed:
        freed = max(0, free_bytes(root) - before) / 1e9
        log(
            f"images: pruned {len(doomed) - len(refused)} unused images and {len(containers)} "
            f"leftover build containers ({freed:.1f} GB freed)"
        )
    for line in refused[:5]:
        log(f"images: kept {line}")
