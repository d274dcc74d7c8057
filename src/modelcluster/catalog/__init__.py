"""Tasks, known models, GPU tiers and task-family images."""

from modelcluster.catalog.loader import CatalogFileError, load_catalog
from modelcluster.catalog.resolve import CatalogError, Placement, resolve
from modelcluster.catalog.schema import Catalog, Family, KnownModel, Tier
from modelcluster.catalog.tasks import TASKS

__all__ = [
    "TASKS",
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
