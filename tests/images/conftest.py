"""The image tier (``make test-images``): the images built from their Dockerfiles, run with runc.

``make test-images`` builds the control-plane and text runtime images first (``make images FAMILIES=text``,
cached), outside the session: the session's egress guard keeps its processes off the package registries. It
needs the session's local cluster to run built images (``MODELCLUSTER_TEST_IMAGES=1``, which ``make test-images``
sets); run any other way, or with images missing or built from another revision, every test here fails saying
so, never skips.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from modelcluster.devcluster.images import runc
from modelcluster.devcluster.images.cli import git_revision
from modelcluster.devcluster.images.plan import LABEL_REVISION

REPO = Path(__file__).resolve().parents[2]
CONTROL_PLANE = "ghcr.io/modelcluster/control-plane:0.1.0"
RUNTIME_TEXT = "ghcr.io/modelcluster/runtime-text:0.1.0"


@pytest.fixture(scope="session")
def built_images() -> tuple[str, str]:
    """The control-plane and text runtime images, built from this checkout by ``make images``."""
    if os.environ.get("MODELCLUSTER_TEST_IMAGES") != "1":
        pytest.fail("the image tier runs with MODELCLUSTER_TEST_IMAGES=1: use `make test-images`")
    revision = git_revision(REPO)
    for image in (CONTROL_PLANE, RUNTIME_TEXT):
        if not runc.image_built(image):
            pytest.fail(f"{image} is not built: `make test-images` builds it (or `make images FAMILIES=text`)")
        built = (runc.image_inspect(image).get("Labels") or {}).get(LABEL_REVISION)
        if built != revision:
            pytest.fail(f"{image} was built from {built}, the checkout is {revision}: `make images FAMILIES=text`")
    return CONTROL_PLANE, RUNTIME_TEXT
