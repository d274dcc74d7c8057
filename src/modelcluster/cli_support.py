"""What the component commands share: log format and catalog loading with a clear CLI error."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from modelcluster.catalog import Catalog, CatalogFileError, load_catalog


def configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def catalog_or_exit(paths: tuple[Path, ...]) -> Catalog:
    """The default catalog with ``paths`` layered over it; a bad file ends the command with its reason."""
    try:
        return load_catalog(paths)
    except (CatalogFileError, ValueError) as error:
        raise click.ClickException(f"invalid catalog: {error}") from error
