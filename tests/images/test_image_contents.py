"""Inside the built images, run by runc: a user that is not root, a read-only root file system, the checkout's
version and revision, and a runtime image without gateway, operator or Kubernetes code."""

from __future__ import annotations

import subprocess
import uuid
from importlib import metadata
from pathlib import Path

from modelcluster.devcluster.images import runc
from modelcluster.devcluster.images.oci import ContainerRequest

REPO = Path(__file__).resolve().parents[2]

# The probe of tests/unit/test_contract.py, now inside the image.
RUNTIME_PROBE = (
    "import sys, modelcluster.runtime.app, modelcluster.runtime.cli, modelcluster.runtime.tasks.generation; "
    "print(sorted(m for m in sys.modules if m.split('.')[0] in ('kubernetes', 'kubernetes_asyncio', 'kopf') "
    "or m.startswith(('modelcluster.gateway', 'modelcluster.operator', 'modelcluster.devcluster'))))"
)


def run(image: str, *command: str) -> subprocess.CompletedProcess[str]:
    request = ContainerRequest(command=command, read_only_root=True)
    return runc.run_once(image, request, f"check-{uuid.uuid4().hex[:8]}")


def check_user_root_fs_and_version(image: str) -> None:
    who = run(image, "id", "-u")
    assert who.returncode == 0, who.stderr
    assert who.stdout.strip() == "10001"
    write = run(image, "sh", "-c", "touch /opt/probe")
    assert write.returncode != 0
    assert "Read-only file system" in write.stderr
    version = run(image, "modelcluster", "--version")
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"modelcluster, version {metadata.version('modelcluster')}"
    labels = runc.image_inspect(image).get("Labels") or {}
    assert labels["org.opencontainers.image.version"] == metadata.version("modelcluster")
    # The commit it was built from (`-dirty`: with uncommitted changes): this checkout or an ancestor of it; the
    # digest label (checked by the fixture) says the sources are the checkout's.
    built = labels["org.opencontainers.image.revision"].removesuffix("-dirty")
    ancestor = subprocess.run(["git", "-C", str(REPO), "merge-base", "--is-ancestor", built, "HEAD"], check=False)
    assert ancestor.returncode == 0, f"{image} was built from {built}, not from this checkout's history"
    assert labels["org.opencontainers.image.source"].startswith("https://")


def test_the_control_plane_image_runs_as_its_user_on_a_read_only_root(built_images: tuple[str, str]) -> None:
    control_plane, _ = built_images
    check_user_root_fs_and_version(control_plane)
    # The control-plane image has no ML stack.
    torch = run(control_plane, "python3", "-c", "import torch")
    assert torch.returncode != 0 and "No module named 'torch'" in torch.stderr


def test_the_runtime_image_runs_as_its_user_on_a_read_only_root(built_images: tuple[str, str]) -> None:
    _, runtime = built_images
    check_user_root_fs_and_version(runtime)


def test_the_runtime_image_has_no_gateway_operator_or_kubernetes_code(built_images: tuple[str, str]) -> None:
    _, runtime = built_images
    probe = run(runtime, "python3", "-c", RUNTIME_PROBE)
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == "[]"
    for module in ("modelcluster.gateway", "modelcluster.operator", "modelcluster.devcluster", "kubernetes"):
        missing = run(runtime, "python3", "-c", f"import {module}")
        assert missing.returncode != 0, f"{module} is in the runtime image"
        assert "No module named" in missing.stderr
