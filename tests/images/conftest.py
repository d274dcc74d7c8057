"""The image tier (``make test-images``): the images built from their Dockerfiles, run with runc.

``make test-images`` builds the control-plane and text runtime images first (``make images FAMILIES=text``,
cached), outside the session: the session's egress guard keeps its processes off the package registries. It
needs the session's local cluster to run built images (``MODELCLUSTER_TEST_IMAGES=1``, which ``make test-images``
sets); run any other way, or with images missing or built from other sources (a digest label), every test
here fails saying so, never skips.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from modelcluster.devcluster.images import runc
from modelcluster.devcluster.images.plan import LABEL_CONTEXT, context_digest

REPO = Path(__file__).resolve().parents[2]
CONTROL_PLANE = "ghcr.io/modelcluster/control-plane:0.1.0"
RUNTIME_TEXT = "ghcr.io/modelcluster/runtime-text:0.1.0"


@pytest.fixture(scope="session")
def built_images() -> tuple[str, str]:
    """The control-plane and text runtime images, built from this checkout by ``make images``."""
    if os.environ.get("MODELCLUSTER_TEST_IMAGES") != "1":
        pytest.fail("the image tier runs with MODELCLUSTER_TEST_IMAGES=1: use `make test-images`")
    digest = context_digest(REPO)
    for image in (CONTROL_PLANE, RUNTIME_TEXT):
        if not runc.image_built(image):
            pytest.fail(f"{image} is not built: `make test-images` builds it (or `make images FAMILIES=text`)")
        if (runc.image_inspect(image).get("Labels") or {}).get(LABEL_CONTEXT) != digest:
            pytest.fail(f"{image} is built from other sources than the checkout's: `make images FAMILIES=text`")
    return CONTROL_PLANE, RUNTIME_TEXT
