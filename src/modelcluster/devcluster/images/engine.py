"""Build the images: buildah (no daemon) where Docker's daemon does not answer, with bases made offline.

Everything buildah keeps (its image store, the Debian root file systems) lives under
``<cache>/images``, outside the repository: a second ``make images`` reuses the cached layers,
and each build prunes what no image's last build holds (:mod:`.store`), so the store stays bounded.
Every failure is an :class:`ImageBuildError` naming the image and the step.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections import deque
from pathlib import Path

from modelcluster.devcluster.binaries import log
from modelcluster.devcluster.images.plan import (
    DEBIAN_SUITE,
    HOST_CA_BUNDLE,
    UV_VERSION,
    Bases,
    Image,
    buildah_build_argv,
    docker_build_argv,
    mmdebstrap_argv,
    offline_bases,
)
from modelcluster.devcluster.images.store import prune, record_chain, step_image_id
from modelcluster.devcluster.versions import cache_root

STEP_PREFIXES = ("STEP ", "[")


class ImageBuildError(RuntimeError):
    """A build that failed: which image, at which step, and the end of its output."""

    def __init__(self, image: str, step: str, detail: str) -> None:
        super().__init__(f"image {image}: {step} failed\n{detail}".rstrip())
        self.image = image
        self.step = step


def images_root() -> Path:
    return cache_root() / "images"


def store_flags(root: Path | None = None) -> list[str]:
    """buildah's global flags for the project's own image store (under the cache, not /var/lib/containers)."""
    base = root or images_root()
    return ["--root", str(base / "storage"), "--runroot", str(base / "run")]


def docker_available() -> bool:
    """True when a Docker daemon answers (a docker client alone is not enough)."""
    if shutil.which("docker") is None:
        return False
    done = subprocess.run(["docker", "info"], capture_output=True, check=False, timeout=30)
    return done.returncode == 0


def require(tool: str, package: str, image: str) -> None:
    if shutil.which(tool) is None:
        raise ImageBuildError(image, f"finding {tool}", f"{tool} is not installed: apt-get install {package} (as root)")


def run_step(argv: list[str], image: str, step: str, cwd: Path | None = None) -> list[str]:
    """Run one command, streaming its step lines as progress; the image ids its steps used or made.

    An ImageBuildError with its last lines on failure.
    """
    tail: deque[str] = deque(maxlen=40)
    ids: list[str] = []
    current = step
    with subprocess.Popen(
        argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True
    ) as process:
        assert process.stdout is not None
        for line in process.stdout:
            text = line.rstrip()
            tail.append(text)
            if (made := step_image_id(text)) is not None:
                ids.append(made)
            marker = text.find("STEP ")
            if marker >= 0 and text.startswith(STEP_PREFIXES):
                current = text
                log(f"{image}: {text[:160]}")
        code = process.wait()
    if code != 0:
        raise ImageBuildError(image, current, "\n".join(tail))
    return ids


def image_exists(name: str, store: list[str]) -> bool:
    done = subprocess.run(["buildah", *store, "inspect", "--type", "image", name], capture_output=True, check=False)
    return done.returncode == 0


def ensure_debian_base(bases: Bases, store: list[str], suite: str = DEBIAN_SUITE) -> None:
    """The python base from Debian packages (mmdebstrap, then buildah from scratch + add + commit), once."""
    if image_exists(bases.python, store):
        log(f"base {bases.python}: cached")
        return
    require("mmdebstrap", "mmdebstrap", bases.python)
    started = time.monotonic()
    log(f"base {bases.python}: mmdebstrap {suite} (python3 from Debian packages, a minute) ...")
    work = images_root() / "bases"
    work.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=work) as scratch:
        rootfs = Path(scratch) / "rootfs.tar"
        run_step(mmdebstrap_argv(suite, rootfs), bases.python, "mmdebstrap")
        commit_scratch(bases.python, store, rootfs, "/", config=["--cmd", "/bin/bash"])
    log(f"base {bases.python}: done in {time.monotonic() - started:.0f}s")


def ensure_uv_base(bases: Bases, store: list[str], version: str = UV_VERSION) -> None:
    """An image holding only ``/uv``, the pinned uv binary (what ghcr.io/astral-sh/uv holds), once."""
    if image_exists(bases.uv, store):
        log(f"base {bases.uv}: cached")
        return
    uv = shutil.which("uv") or str(Path.home() / ".local" / "bin" / "uv")
    found = subprocess.run([uv, "--version"], capture_output=True, text=True, check=False).stdout.split()
    if found[1:2] != [version]:
        raise ImageBuildError(bases.uv, "finding uv", f"needs uv {version} on PATH (found {' '.join(found) or 'none'})")
    commit_scratch(bases.uv, store, Path(uv), "/uv", config=[])
    log(f"base {bases.uv}: from {uv}")


def commit_scratch(name: str, store: list[str], source: Path, destination: str, config: list[str]) -> None:
    created = subprocess.run(["buildah", *store, "from", "scratch"], capture_output=True, text=True, check=False)
    if created.returncode != 0:
        raise ImageBuildError(name, "buildah from scratch", created.stderr)
    container = created.stdout.strip()
    try:
        run_step(["buildah", *store, "add", "--chmod", "0755", container, str(source), destination], name, "add")
        if config:
            run_step(["buildah", *store, "config", *config, container], name, "config")
        run_step(["buildah", *store, "commit", "--quiet", container, name], name, "commit")
    finally:
        subprocess.run(["buildah", *store, "rm", container], capture_output=True, check=False)


def build_with_buildah(images: list[Image], context: Path, bases: Bases) -> None:
    """Build ``images`` into the project's store; the offline bases are made first when missing."""
    require("buildah", "buildah", images[0].name if images else "images")
    store = store_flags()
    prune(images_root(), store)
    if bases == offline_bases():
        ensure_debian_base(bases, store)
        ensure_uv_base(bases, store)
    elif not (image_exists(bases.python, store) and image_exists(bases.uv, store)):
        log(f"bases {bases.python} and {bases.uv}: pulled by buildah where not in the store")
    uv_cache = Path(os.environ.get("UV_CACHE_DIR") or Path.home() / ".cache" / "uv")
    uv_cache.mkdir(parents=True, exist_ok=True)
    ca_bundle = HOST_CA_BUNDLE if HOST_CA_BUNDLE.is_file() else None
    for index, image in enumerate(images, start=1):
        started = time.monotonic()
        log(f"[{index}/{len(images)}] building {image.tag} from {image.dockerfile} (buildah) ...")
        argv = buildah_build_argv(image, store, context, uv_cache, ca_bundle)
        record_chain(images_root(), image.name, run_step(argv, image.name, "buildah build", context))
        log(f"[{index}/{len(images)}] {image.tag}: built in {time.monotonic() - started:.0f}s, {size_of(image.tag)}")
    prune(images_root(), store)


def build_with_docker(images: list[Image], context: Path, platform: str, push: bool) -> None:
    for index, image in enumerate(images, start=1):
        started = time.monotonic()
        log(f"[{index}/{len(images)}] building {image.tag} from {image.dockerfile} (docker buildx) ...")
        run_step(docker_build_argv(image, context, platform, push), image.name, "docker buildx build", context)
        log(f"[{index}/{len(images)}] {image.tag}: built in {time.monotonic() - started:.0f}s")


def size_of(name: str) -> str:
    done = subprocess.run(
        ["buildah", *store_flags(), "images", "--format", "{{.Size}}", name],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip().splitlines()[0] if done.returncode == 0 and done.stdout.strip() else "size unknown"
