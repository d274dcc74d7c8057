"""What a prune of the image store keeps and removes (pure parts and the chain records)."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelcluster.devcluster.images.store import (
    StoredContainer,
    StoredImage,
    build_leftovers,
    garbage,
    record_chain,
    recorded_chains,
    step_image_id,
)

FULL = "20f527d33c4cab3a3670ec60c195029dcf3aa8c334d0f93966a05c6ae788e23c"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (f"--> Using cache {FULL}", FULL[:11]),
        ("--> 20f527d33c4", FULL[:11]),
        ("--> 20f527d33c", None),
        (FULL, FULL[:11]),
        ("[3/3] STEP 5/19: COPY --from=build /opt/runtime /opt/runtime", None),
        ("Successfully tagged ghcr.io/modelcluster/runtime-text:0.1.0", None),
        ("--> Using cache not-an-id", None),
    ],
)
def test_a_build_line_names_the_image_its_step_used_or_made(line: str, expected: str | None) -> None:
    assert step_image_id(line) == expected


def test_untagged_images_outside_every_chain_are_garbage_and_tagged_ones_never_are() -> None:
    images = [
        StoredImage("aaaaaaaaaaaa", ("ghcr.io/modelcluster/runtime-text:0.1.0",)),
        StoredImage("bbbbbbbbbbbb", ()),
        StoredImage("cccccccccccc", ()),
        StoredImage("dddddddddddd", ("localhost/modelcluster/uv:0.13.9",)),
    ]
    assert garbage(images, {"bbbbbbbbbbbb" + "0" * 52}) == ["cccccccccccc"]
    assert garbage(images, set()) == ["bbbbbbbbbbbb", "cccccccccccc"]


def test_only_the_working_containers_of_unfinished_builds_are_leftovers() -> None:
    containers = [
        StoredContainer("1", "uv-working-container"),
        StoredContainer("2", "uv-working-container-7"),
        StoredContainer("3", "d3c20c9e485d-working-container"),
        StoredContainer("4", "mc-images-31588b2c-gateway"),
        StoredContainer("5", "working-container-of-mine-x"),
    ]
    assert build_leftovers(containers) == ["1", "2", "3"]


def test_a_chain_record_replaces_the_same_images_previous_one(tmp_path: Path) -> None:
    record_chain(tmp_path, "runtime-text", ["111111111111", "222222222222"])
    record_chain(tmp_path, "control-plane", ["333333333333"])
    record_chain(tmp_path, "runtime-text", ["444444444444", "444444444444"])
    assert recorded_chains(tmp_path) == {"333333333333", "444444444444"}
    assert recorded_chains(tmp_path / "none") == set()
