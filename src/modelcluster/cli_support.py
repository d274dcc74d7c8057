"""What the component commands share: log format, catalog loading and the pod credential key, with clear CLI
errors."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import click

from modelcluster.api.pod_auth import (
    SIGNING_KEY_ENV,
    SIGNING_KEY_FIELD,
    SIGNING_KEY_SECRET,
    CredentialIssuer,
    InvalidSigningKey,
)
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


def pod_credentials_or_exit() -> CredentialIssuer:
    """The pod credential issuer from the signing key in ``$MODELCLUSTER_POD_AUTH_KEY``; its absence ends the
    command (model pods would otherwise answer anyone, or refuse the gateway)."""
    key = os.environ.get(SIGNING_KEY_ENV, "")
    if not key:
        raise click.ClickException(
            f"{SIGNING_KEY_ENV} is not set: the signing key of the model pods' credentials (the Secret "
            f"{SIGNING_KEY_SECRET} of the platform namespace, key {SIGNING_KEY_FIELD!r}; docs/security.md)"
        )
    try:
        return CredentialIssuer(key)
    except InvalidSigningKey as error:
        raise click.ClickException(f"{SIGNING_KEY_ENV}: {error}") from error
