"""Known models, GPU tiers and task-family images."""

from modelcluster.catalog.loader import CatalogFileError, load_catalog
from modelcluster.catalog.resolve import CatalogError, Placement, resolve
from modelcluster.catalog.schema import Catalog, Family, KnownModel, Tier

__all__ = [
    "Catalog",
    "CatalogError",
    "CatalogFileError",
    "Family",
    "KnownModel",
    "Placement",
    "Tier",
    "load_catalog",
    "resolve",
]
