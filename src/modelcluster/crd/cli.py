"""``modelcluster crd``: write (or check) the generated CRD files."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from modelcluster.crd.definition import render_all_crds
from modelcluster.crd.output import stale_paths, write_crds


@click.command()
@click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(),
    show_default=True,
    help="Repository root; writes crds/ and charts/modelcluster/crds/ below it.",
)
@click.option("--check", is_flag=True, help="Write nothing; exit 1 when a committed CRD is stale.")
@click.option("--stdout", "to_stdout", is_flag=True, help="Print the CRDs instead of writing files.")
def crd(root: Path, check: bool, to_stdout: bool) -> None:
    """Generate the ModelCluster and Tenant CRDs from the pydantic models in modelcluster.api."""
    if to_stdout:
        sys.stdout.write(render_all_crds())
        return
    if check:
        stale = stale_paths(root)
        for path in stale:
            click.echo(f"stale: {path} (run `modelcluster crd`)", err=True)
        sys.exit(1 if stale else 0)
    for path in write_crds(root):
        click.echo(f"wrote {path}")
