"""What ``make images`` builds, as data: the images, their build arguments and the build commands (pure)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

FAMILIES = ("text", "llm", "vision", "audio", "diffusion")
REGISTRY = "ghcr.io/modelcluster"
UV_VERSION = "0.13.9"
# The Dockerfiles' default bases, pulled where a registry is reachable.
PUBLIC_PYTHON_IMAGE = "python:3.11.14-slim-bookworm"
PUBLIC_UV_IMAGE = f"ghcr.io/astral-sh/uv:{UV_VERSION}"
DEBIAN_SUITE = "bookworm"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
# Debian packages of the offline base: python3 (3.11 on bookworm) and the CA store; passwd (useradd) is in minbase.
DEBIAN_PACKAGES = ("python3", "ca-certificates")
# Not needed at run time, and most of a minimal system's size.
DPKG_EXCLUDES = ("/usr/share/doc/*", "/usr/share/man/*", "/usr/share/info/*", "/usr/share/locale/*")
LOCAL = "localhost/modelcluster"
# uv's cache inside a build when the host's is mounted (the Dockerfiles' UV_CACHE_DIR argument).
BUILD_UV_CACHE = "/run/uv-cache"
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
LABEL_VERSION = "org.opencontainers.image.version"
LABEL_REVISION = "org.opencontainers.image.revision"
LABEL_SOURCE = "org.opencontainers.image.source"
# A digest of what the images are built from (the files the Dockerfiles copy): tells a stale image apart.
LABEL_CONTEXT = "dev.modelcluster.context-digest"
CONTEXT_PATHS = ("pyproject.toml", "uv.lock", "README.md", "src", "operator/Dockerfile", "model-images")


@dataclass(frozen=True)
class Image:
    """One image of ``make images``: a Dockerfile, its build arguments and the tag it gets."""

    name: str
    dockerfile: str
    tag: str
    build_args: dict[str, str] = field(default_factory=dict)
    context_digest: str = ""


@dataclass(frozen=True)
class Bases:
    """The images the Dockerfiles start from (their PYTHON_IMAGE and UV_IMAGE arguments)."""

    python: str
    uv: str


def debian_recipe(suite: str = DEBIAN_SUITE, packages: tuple[str, ...] = DEBIAN_PACKAGES) -> str:
    return json.dumps({"suite": suite, "packages": packages, "excludes": DPKG_EXCLUDES, "variant": "minbase"})


def offline_bases(suite: str = DEBIAN_SUITE, uv_version: str = UV_VERSION) -> Bases:
    """Local names of the bases made from Debian packages and the pinned uv binary; the tag names the recipe."""
    digest = hashlib.sha256(debian_recipe(suite).encode()).hexdigest()[:12]
    return Bases(python=f"{LOCAL}/debian-python:{suite}-{digest}", uv=f"{LOCAL}/uv:{uv_version}")


def plan(
    version: str,
    revision: str,
    source: str,
    bases: Bases,
    families: tuple[str, ...] = FAMILIES,
    registry: str = REGISTRY,
    digest: str = "",
) -> list[Image]:
    """The control-plane image and one runtime image per family, in build order."""
    unknown = sorted(set(families) - set(FAMILIES))
    if unknown:
        raise ValueError(f"unknown image families {unknown}: the families are {', '.join(FAMILIES)}")
    common = {
        "PYTHON_IMAGE": bases.python,
        "UV_IMAGE": bases.uv,
        "VERSION": version,
        "REVISION": revision,
        "SOURCE": source,
    }
    images = [
        Image("control-plane", "operator/Dockerfile", f"{registry}/control-plane:{version}", dict(common), digest)
    ]
    images.extend(
        Image(
            f"runtime-{family}",
            "model-images/Dockerfile",
            f"{registry}/runtime-{family}:{version}",
            {**common, "FAMILY": family},
            digest,
        )
        for family in families
    )
    return images


def context_digest(context: Path) -> str:
    """SHA-256 over the paths and contents of the files the images are built from (caches excluded)."""
    digest = hashlib.sha256()
    for name in CONTEXT_PATHS:
        root = context / name
        files = sorted(root.rglob("*")) if root.is_dir() else [root]
        for path in files:
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                digest.update(str(path.relative_to(context)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _build_arg_flags(image: Image, extra: dict[str, str]) -> list[str]:
    """Build arguments, and the OCI labels as ``--label`` too: a cached LABEL layer can keep an older revision."""
    flags: list[str] = []
    for key, value in {**image.build_args, **extra}.items():
        flags += ["--build-arg", f"{key}={value}"]
    labels = {
        LABEL_VERSION: image.build_args.get("VERSION"),
        LABEL_REVISION: image.build_args.get("REVISION"),
        LABEL_SOURCE: image.build_args.get("SOURCE"),
        LABEL_CONTEXT: image.context_digest,
    }
    for key, label in labels.items():
        if label:
            flags += ["--label", f"{key}={label}"]
    return flags


def buildah_build_argv(
    image: Image, store: list[str], context: Path, uv_cache: Path | None, ca_bundle: Path | None
) -> list[str]:
    """``buildah build`` of ``image`` (chroot isolation: no daemon, no user namespaces), the host's network.

    The host's uv cache is mounted into every RUN step (torch's wheels are downloaded once for the checkout's
    environment and every image), and the host's CA store over the base's (a proxy's CA), for building only.
    """
    argv = ["buildah", *store, "build", "--isolation", "chroot", "--network", "host", "--layers"]
    extra: dict[str, str] = {}
    if uv_cache is not None:
        argv += ["--volume", f"{uv_cache}:{BUILD_UV_CACHE}"]
        extra["UV_CACHE_DIR"] = BUILD_UV_CACHE
    if ca_bundle is not None:
        argv += ["--volume", f"{ca_bundle}:/etc/ssl/certs/ca-certificates.crt:ro"]
    argv += _build_arg_flags(image, extra)
    argv += ["--file", str(context / image.dockerfile), "--tag", image.tag, str(context)]
    return argv


def docker_build_argv(image: Image, context: Path, platform: str, push: bool) -> list[str]:
    """``docker buildx build`` of ``image``, loaded into the daemon (or pushed)."""
    return [
        "docker",
        "buildx",
        "build",
        "--platform",
        platform,
        "--push" if push else "--load",
        *_build_arg_flags(image, {}),
        "--file",
        str(context / image.dockerfile),
        "--tag",
        image.tag,
        str(context),
    ]


def mmdebstrap_argv(suite: str, target: Path, mirror: str = DEBIAN_MIRROR) -> list[str]:
    """A minimal Debian root file system with python3, as a tarball."""
    argv = ["mmdebstrap", "--variant=minbase", "--mode=root", f"--include={','.join(DEBIAN_PACKAGES)}"]
    argv += [f"--dpkgopt=path-exclude={pattern}" for pattern in DPKG_EXCLUDES]
    return [*argv, suite, str(target), mirror]
