"""The image tier (``make test-images``): the images built from their Dockerfiles, run with runc.

It needs the session's local cluster to run built images (``MODELCLUSTER_TEST_IMAGES=1``, which
``make test-images`` sets); run any other way, every test here fails saying so, never skips.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CONTROL_PLANE = "ghcr.io/modelcluster/control-plane:0.1.0"
RUNTIME_TEXT = "ghcr.io/modelcluster/runtime-text:0.1.0"


@pytest.fixture(scope="session")
def built_images() -> Iterator[tuple[str, str]]:
    """The control-plane and text runtime images, built by ``modelcluster images build`` (cached layers)."""
    if os.environ.get("MODELCLUSTER_TEST_IMAGES") != "1":
        pytest.fail("the image tier runs with MODELCLUSTER_TEST_IMAGES=1: use `make test-images`")
    entry = "from modelcluster.cli import main; main()"
    build = [sys.executable, "-c", entry, "images", "build", "--family", "text", "--context", str(REPO)]
    done = subprocess.run(build, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
    assert done.returncode == 0, f"make images failed:\n{done.stdout[-6000:]}"
    yield CONTROL_PLANE, RUNTIME_TEXT
