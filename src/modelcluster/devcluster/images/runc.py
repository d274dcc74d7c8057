"""Run an image of the project's store as an OCI container with runc: no daemon.

The root file system is a buildah working container of the image (an overlay over its layers,
mounted); the bundle's ``config.json`` comes from :func:`oci.runtime_config`. A container is
named, so that whoever started it can delete it (``runc delete`` + ``buildah rm``) afterwards.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelcluster.devcluster.images.engine import image_exists, images_root, store_flags
from modelcluster.devcluster.images.oci import ContainerRequest, ImageConfig, runtime_config


class ContainerError(RuntimeError):
    """runc or buildah could not start a container: the image and the step in the message."""


@dataclass(frozen=True)
class Bundle:
    name: str
    path: Path
    state: Path

    def run_argv(self) -> list[str]:
        """``runc run`` in the foreground: it forwards signals to the container and exits with it."""
        return ["runc", "--root", str(self.state), "run", "--bundle", str(self.path), self.name]


def state_root() -> Path:
    return images_root() / "runc"


def image_built(image: str) -> bool:
    """True when ``image`` is in the project's store (built by ``make images``)."""
    return shutil.which("buildah") is not None and image_exists(image, store_flags())


def _buildah(args: list[str], image: str, step: str) -> str:
    done = subprocess.run(["buildah", *store_flags(), *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise ContainerError(f"image {image}: {step} failed: {done.stderr.strip()}")
    return done.stdout.strip()


def image_inspect(image: str) -> dict[str, Any]:
    """The image's OCI config (entrypoint, env, user, labels...) as ``buildah inspect`` gives it."""
    inspected = json.loads(_buildah(["inspect", "--type", "image", image], image, "inspect"))
    config: dict[str, Any] = inspected["OCIv1"].get("config") or {}
    return config


def image_config(image: str) -> ImageConfig:
    return ImageConfig.from_oci(image_inspect(image))


def prepare(image: str, request: ContainerRequest, name: str) -> Bundle:
    """A working container of ``image`` named ``name``, mounted, and its bundle written."""
    if shutil.which("runc") is None:
        raise ContainerError(f"image {image}: runc is not installed (apt-get install runc, as root)")
    delete(name)
    config = image_config(image)
    _buildah(["from", "--pull-never", "--name", name, image], image, "buildah from")
    rootfs = _buildah(["mount", name], image, "buildah mount")
    bundle = state_root() / "bundles" / name
    bundle.mkdir(parents=True, exist_ok=True)
    try:
        spec = runtime_config(config, request, rootfs)
    except ValueError as exc:
        delete(name)
        raise ContainerError(f"image {image}: {exc}") from exc
    (bundle / "config.json").write_text(json.dumps(spec, indent=2))
    return Bundle(name, bundle, state_root() / "state")


def delete(name: str) -> None:
    """Forget container ``name`` everywhere: runc's state, the bundle and buildah's working container."""
    subprocess.run(
        ["runc", "--root", str(state_root() / "state"), "delete", "--force", name], capture_output=True, check=False
    )
    subprocess.run(["buildah", *store_flags(), "rm", name], capture_output=True, check=False)
    shutil.rmtree(state_root() / "bundles" / name, ignore_errors=True)


def run_once(
    image: str, request: ContainerRequest, name: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``image`` to completion; its output and exit status. The container is deleted afterwards."""
    bundle = prepare(image, request, name)
    try:
        return subprocess.run(bundle.run_argv(), capture_output=True, text=True, timeout=timeout, check=False)
    finally:
        delete(name)
