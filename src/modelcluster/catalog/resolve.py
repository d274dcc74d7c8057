"""Resolve a model id (and an optional task) into what its pods need."""

from __future__ import annotations

from dataclasses import dataclass

from modelcluster.catalog.schema import Catalog, Tier


class CatalogError(ValueError):
    """The catalog cannot place this model; ``reason`` is a CamelCase word for status."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class Placement:
    """The task a model serves, the image serving it, and the tier it runs on."""

    model_id: str
    task: str
    family: str
    image: str
    tier: Tier
    known: bool


def resolve(catalog: Catalog, model_id: str, task: str | None) -> Placement:
    """Where ``model_id`` runs. ``task`` (from the spec) wins over the catalog's task.

    Raises :class:`CatalogError` for a model the catalog does not know when no
    task is given, and for a task no family serves.
    """
    known = catalog.model(model_id)
    if task is None:
        if known is None:
            raise CatalogError(
                "UnknownModel",
                f"model {model_id!r} is not in the catalog; set spec.task to one of: {', '.join(catalog.tasks)}",
            )
        task = known.task
    family = catalog.family_of(task)
    if family is None:
        raise CatalogError("UnknownTask", f"task {task!r} is not served here; use one of: {', '.join(catalog.tasks)}")
    if known is not None and known.tier is not None:
        tier = catalog.tier(known.tier)
    elif known is not None and known.params is not None:
        tier = catalog.tier_for_params(known.params)
    else:
        tier = catalog.tier(catalog.default_tier)
    return Placement(
        model_id=model_id,
        task=task,
        family=family,
        image=known.image if known is not None and known.image else catalog.families[family].image,
        tier=tier,
        known=known is not None,
    )
