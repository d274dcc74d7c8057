"""Resolve a model id (and an optional task) into what its pods need."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from modelcluster.api.modelcluster import ModelCache, ModelClusterSpec, Rollout, SecretKeySelector
from modelcluster.catalog.schema import Catalog, Tier

#: Replace pods without taking one down first: a one-replica cluster keeps serving through a rollout.
DEFAULT_ROLLOUT = Rollout(max_surge=1, max_unavailable=0)


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
    token_secret: SecretKeySelector | None = None
    image_pull_secrets: tuple[str, ...] = ()
    cache: ModelCache | None = None  # None: a pod-local emptyDir
    rollout: Rollout = field(default_factory=Rollout)  # DEFAULT_ROLLOUT


def resolve(catalog: Catalog, model_id: str, task: str | None) -> Placement:
    """Where ``model_id`` runs. ``task`` (from the spec) wins over the catalog's task.

    Raises :class:`CatalogError` for a model the catalog does not know when no
    task is given, and for a task no family serves.

    The catalog's shared hub token (``catalog.token_secret``) goes only to models the catalog
    lists: a model id it does not know (any repository a tenant names) never gets it, so the
    token cannot serve private repositories it happens to read. Such a model gets a token only
    from its own spec (:func:`with_spec`).
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
    pull_secrets = (*catalog.families[family].image_pull_secrets, *catalog.image_pull_secrets)
    return Placement(
        model_id=model_id,
        task=task,
        family=family,
        image=known.image if known is not None and known.image else catalog.families[family].image,
        tier=tier,
        known=known is not None,
        token_secret=(known.token_secret or catalog.token_secret) if known is not None else None,
        image_pull_secrets=tuple(dict.fromkeys(pull_secrets)),
        cache=(known.cache if known is not None else None) or catalog.cache,
        rollout=(known.rollout if known is not None else None) or tier.rollout or DEFAULT_ROLLOUT,
    )


def with_spec(placement: Placement, spec: ModelClusterSpec) -> Placement:
    """``placement`` with what the ModelCluster's spec sets itself (the spec wins over the catalog)."""
    return replace(
        placement,
        token_secret=spec.token_secret or placement.token_secret,
        image_pull_secrets=placement.image_pull_secrets
        if spec.image_pull_secrets is None
        else tuple(dict.fromkeys(ref.name for ref in spec.image_pull_secrets)),
        cache=spec.cache or placement.cache,
        rollout=spec.rollout or placement.rollout,
    )
