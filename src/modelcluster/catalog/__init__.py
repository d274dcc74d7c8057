"""Known models, GPU tiers and task-family images."""

from modelcluster.catalog.loader import CatalogFileError, load_catalog
from modelcluster.catalog.resolve import DEFAULT_ROLLOUT, CatalogError, Placement, resolve, with_spec
from modelcluster.catalog.schema import Catalog, Family, KnownModel, Tier

__all__ = [
    "DEFAULT_ROLLOUT",
    "Catalog",
    "CatalogError",
    "CatalogFileError",
    "Family",
    "KnownModel",
    "Placement",
    "Tier",
    "load_catalog",
    "resolve",
    "with_spec",
]
