"""What ``make images`` builds and how a pod's container becomes an OCI bundle (pure parts)."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelcluster.devcluster.images.oci import ContainerRequest, ImageConfig, Mount, runtime_config
from modelcluster.devcluster.images.plan import (
    BUILD_UV_CACHE,
    FAMILIES,
    Bases,
    buildah_build_argv,
    mmdebstrap_argv,
    offline_bases,
    plan,
)

BASES = Bases("localhost/base:1", "localhost/uv:1")


def test_the_plan_is_the_control_plane_then_one_image_per_family() -> None:
    images = plan("0.1.0", "abc", "https://example.test/src", BASES)
    assert [image.name for image in images] == ["control-plane", *(f"runtime-{family}" for family in FAMILIES)]
    assert images[0].dockerfile == "operator/Dockerfile"
    assert images[1].build_args["FAMILY"] == "text"
    assert images[1].tag == "ghcr.io/modelcluster/runtime-text:0.1.0"
    for image in images:
        assert image.build_args["PYTHON_IMAGE"] == "localhost/base:1"
        assert image.build_args["REVISION"] == "abc"
        assert (Path(__file__).resolve().parents[2] / image.dockerfile).is_file()


def test_an_unknown_family_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown image families"):
        plan("0.1.0", "abc", "src", BASES, ("text", "smell"))


def test_buildah_mounts_the_uv_cache_and_the_ca_store_for_building_only() -> None:
    image = plan("0.1.0", "abc", "src", BASES, ("text",))[1]
    argv = buildah_build_argv(image, ["--root", "/s"], Path("/repo"), Path("/uv"), Path("/ca.crt"))
    assert argv[:4] == ["buildah", "--root", "/s", "build"]
    assert argv[4:6] == ["--isolation", "chroot"]
    assert f"/uv:{BUILD_UV_CACHE}" in argv
    assert f"UV_CACHE_DIR={BUILD_UV_CACHE}" in argv
    assert "/ca.crt:/etc/ssl/certs/ca-certificates.crt:ro" in argv
    assert "org.opencontainers.image.revision=abc" in argv
    assert argv[-3:] == ["--tag", "ghcr.io/modelcluster/runtime-text:0.1.0", "/repo"]


def test_the_offline_base_is_named_by_its_recipe() -> None:
    bases = offline_bases()
    assert bases.python.startswith("localhost/modelcluster/debian-python:bookworm-")
    assert offline_bases("trixie").python != bases.python
    argv = mmdebstrap_argv("bookworm", Path("/t.tar"))
    assert "--variant=minbase" in argv
    assert "--include=python3,ca-certificates" in argv


IMAGE = ImageConfig(
    entrypoint=("modelcluster", "runtime"),
    cmd=("--serve",),
    env=("PATH=/opt/bin:/usr/bin", "PORT=8000"),
    user="10001:10001",
)


def test_kubernetes_command_and_args_replace_entrypoint_and_cmd() -> None:
    assert runtime_config(IMAGE, ContainerRequest(), "/r")["process"]["args"] == ["modelcluster", "runtime", "--serve"]
    args = ContainerRequest(args=("gateway", "--port", "8080"))
    assert runtime_config(IMAGE, args, "/r")["process"]["args"] == [
        "modelcluster",
        "runtime",
        "gateway",
        "--port",
        "8080",
    ]
    command = ContainerRequest(command=("sh", "-c"), args=("id",))
    assert runtime_config(IMAGE, command, "/r")["process"]["args"] == ["sh", "-c", "id"]


def test_the_pod_env_user_mounts_and_network_namespace_reach_the_bundle() -> None:
    request = ContainerRequest(
        env={"PORT": "9000", "MODEL_ID": "m"},
        run_as_user=2000,
        read_only_root=True,
        mounts=(Mount("/host/cache", "/models/cache"), Mount("/host/token", "/var/run/secrets/sa", read_only=True)),
        network_namespace="/run/netns/pod-1",
    )
    spec = runtime_config(IMAGE, request, "/rootfs")
    assert spec["root"] == {"path": "/rootfs", "readonly": True}
    assert spec["process"]["user"] == {"uid": 2000, "gid": 10001}  # the image's group, as in Kubernetes
    assert "PORT=9000" in spec["process"]["env"] and "MODEL_ID=m" in spec["process"]["env"]
    assert {"type": "network", "path": "/run/netns/pod-1"} in spec["linux"]["namespaces"]
    binds = {m["destination"]: m["options"] for m in spec["mounts"] if m["type"] == "bind"}
    assert binds == {"/models/cache": ["rbind", "rw"], "/var/run/secrets/sa": ["rbind", "ro"]}
    assert spec["process"]["noNewPrivileges"] is True


def test_the_image_user_is_used_without_run_as_user_and_must_be_numeric() -> None:
    assert runtime_config(IMAGE, ContainerRequest(), "/r")["process"]["user"] == {"uid": 10001, "gid": 10001}
    with pytest.raises(ValueError, match="not numeric"):
        runtime_config(ImageConfig(entrypoint=("x",), user="model"), ContainerRequest(), "/r")
    with pytest.raises(ValueError, match="no command"):
        runtime_config(ImageConfig(), ContainerRequest(), "/r")
