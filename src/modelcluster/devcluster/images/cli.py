"""``modelcluster images build``: the control-plane and model images from their Dockerfiles (``make images``)."""

from __future__ import annotations

import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import click

from modelcluster.devcluster.binaries import log
from modelcluster.devcluster.images import engine
from modelcluster.devcluster.images.plan import (
    FAMILIES,
    PUBLIC_PYTHON_IMAGE,
    PUBLIC_UV_IMAGE,
    REGISTRY,
    Bases,
    context_digest,
    offline_bases,
    plan,
)

DEFAULT_SOURCE = "https://github.com/modelcluster/modelcluster"


def git_revision(context: Path) -> str:
    """The checkout's commit, with ``-dirty`` when it has uncommitted changes; ``unknown`` outside git."""
    done = subprocess.run(
        ["git", "-C", str(context), "describe", "--always", "--dirty", "--abbrev=40"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() if done.returncode == 0 else "unknown"


@click.group()
def images() -> None:
    """The images a Helm install runs, built without a Docker daemon where there is none."""


@images.command()
@click.option(
    "--family",
    "families",
    multiple=True,
    type=click.Choice(FAMILIES),
    help="Model image families to build (default: all); repeat for several.",
)
@click.option("--no-runtimes", is_flag=True, help="Only the control-plane image.")
@click.option(
    "--engine",
    "engine_name",
    type=click.Choice(["auto", "docker", "buildah"]),
    default="auto",
    show_default=True,
    help="auto: docker where its daemon answers, else buildah.",
)
@click.option("--registry", default=REGISTRY, show_default=True, help="The images' repository prefix.")
@click.option("--version", default=None, help="The images' tag (default: the project's version).")
@click.option("--python-image", default=None, help="Base with python3 (default: Debian packages, made offline).")
@click.option("--uv-image", default=None, help="Image holding /uv (default: made from the pinned uv binary).")
@click.option("--platform", default="linux/amd64", show_default=True, help="docker buildx only.")
@click.option("--push", is_flag=True, help="docker buildx only: push instead of loading.")
@click.option("--context", type=click.Path(file_okay=False, path_type=Path), default=Path(), show_default=True)
def build(
    families: tuple[str, ...],
    no_runtimes: bool,
    engine_name: str,
    registry: str,
    version: str | None,
    python_image: str | None,
    uv_image: str | None,
    platform: str,
    push: bool,
    context: Path,
) -> None:
    """Build the control-plane image and the model images (cached: a second run reuses every layer)."""
    context = context.resolve()
    tag = version or metadata.version("modelcluster")
    revision = git_revision(context)
    if (python_image is None) != (uv_image is None):
        raise click.UsageError("give both --python-image and --uv-image, or neither (the offline bases)")
    use_docker = engine_name == "docker" or (engine_name == "auto" and engine.docker_available())
    if python_image and uv_image:
        bases = Bases(python_image, uv_image)
    else:
        bases = Bases(PUBLIC_PYTHON_IMAGE, PUBLIC_UV_IMAGE) if use_docker else offline_bases()
    chosen = () if no_runtimes else (families or FAMILIES)
    todo = plan(tag, revision, DEFAULT_SOURCE, bases, chosen, registry, context_digest(context))
    started = time.monotonic()
    try:
        if use_docker:
            engine.build_with_docker(todo, context, platform, push)
        else:
            engine.build_with_buildah(todo, context, bases)
    except engine.ImageBuildError as exc:
        click.echo(f"make images: {exc}", err=True)
        sys.exit(1)
    log(f"images: {len(todo)} built in {time.monotonic() - started:.0f}s ({'docker' if use_docker else 'buildah'})")
