"""Load the catalog: the packaged default, then files or a mounted ConfigMap on top.

Each extra source is a YAML or JSON file, or a directory (a ConfigMap mount)
whose ``*.yaml``, ``*.yml`` and ``*.json`` files are read in name order. Later
sources replace families and tiers by name, models by id, prices by table and tier, and ``defaultTier``.
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from modelcluster.catalog.schema import Catalog

_SUFFIXES = (".yaml", ".yml", ".json")


class CatalogFileError(ValueError):
    """A catalog source that cannot be read or is not a mapping."""


def _parse(text: str, origin: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise CatalogFileError(f"{origin}: not YAML or JSON: {error}") from error
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise CatalogFileError(f"{origin}: a catalog must be a mapping, got {type(data).__name__}")
    return data


def default_document() -> dict[str, Any]:
    """The packaged default catalog as a raw document."""
    text = resources.files("modelcluster.catalog").joinpath("default.yaml").read_text(encoding="utf-8")
    return _parse(text, "default catalog")


def _documents(source: Path) -> list[dict[str, Any]]:
    if source.is_dir():
        # A ConfigMap mount holds ``..data`` links and dot-directories: read visible files only.
        files = sorted(p for p in source.iterdir() if p.suffix in _SUFFIXES and not p.name.startswith("."))
        return [_parse(p.read_text(encoding="utf-8"), str(p)) for p in files]
    if source.is_file():
        return [_parse(source.read_text(encoding="utf-8"), str(source))]
    raise CatalogFileError(f"{source}: no such catalog file or directory")


def _by_key(items: Iterable[dict[str, Any]], key: str) -> dict[str, dict[str, Any]]:
    return {str(item[key]): item for item in items if isinstance(item, dict) and key in item}


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``override`` on top of ``base``: families/tiers by name, models by id, scalars replaced."""
    merged = dict(base)
    for key, value in override.items():
        if key == "families" and isinstance(value, dict):
            merged[key] = {**base.get(key, {}), **value}
        elif key == "tiers" and isinstance(value, list):
            merged[key] = list({**_by_key(base.get(key, []), "name"), **_by_key(value, "name")}.values())
        elif key == "prices" and isinstance(value, dict):
            base_prices = base.get(key) or {}
            merged[key] = {
                table: {**(base_prices.get(table) or {}), **(value.get(table) or {})}
                for table in {*base_prices, *value}
            }
        elif key == "models" and isinstance(value, list):
            merged[key] = list({**_by_key(base.get(key, []), "id"), **_by_key(value, "id")}.values())
        else:
            merged[key] = value
    return merged


def load_catalog(sources: Iterable[Path] = (), *, include_default: bool = True) -> Catalog:
    """The catalog from the packaged default (unless excluded) and ``sources`` on top."""
    document: dict[str, Any] = default_document() if include_default else {}
    for source in sources:
        for extra in _documents(source):
            document = merge(document, extra)
    return Catalog.model_validate(document)
