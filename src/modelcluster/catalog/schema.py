"""The catalog file format: task families and their images, GPU tiers, known models."""

from __future__ import annotations

from functools import cached_property
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from modelcluster.api.modelcluster import (
    DNS_SUBDOMAIN_PATTERN,
    TASK_PATTERN,
    ModelCache,
    Rollout,
    SecretKeySelector,
    is_model_id,
)
from modelcluster.api.tasks import TASKS, tasks_of_family

#: Bytes per parameter (16-bit weights) times the headroom for activations and caches.
BYTES_PER_PARAM = 2
HEADROOM = 1.25
_GB = 1_000_000_000
_MIB = 1024 * 1024


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


PullSecretName = Annotated[str, Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN_PATTERN)]


class Family(_Model):
    """Tasks served by one runtime image."""

    image: str = Field(min_length=1)
    tasks: tuple[str, ...] = Field(min_length=1)
    image_pull_secrets: tuple[PullSecretName, ...] = Field(
        default=(), description="Secrets (in each cluster's namespace) for pulling the image."
    )


class Tier(_Model):
    """An instance size: GPU memory of the hosted tier and what a pod requests for it."""

    name: str = Field(pattern=r"^[a-z0-9-]+$")
    gpu_memory_gb: int = Field(gt=0, alias="gpuMemoryGB", description="GPU memory of the hosted tier, in GB.")
    gpus: int = Field(ge=0, description="nvidia.com/gpu devices requested.")
    cpu: str = Field(description="CPU request, a Kubernetes quantity.")
    memory: str = Field(description="Memory request and limit, a Kubernetes quantity.")
    cache: str = Field(description="Size limit of the model cache volume, a Kubernetes quantity.")
    gpu_products: tuple[str, ...] = Field(
        default=(),
        description="GPU models allowed (`nvidia.com/gpu.product` values); any with enough memory when empty.",
    )
    rollout: Rollout | None = Field(
        default=None, description="Rollout strategy of the tier's clusters (e.g. maxSurge 0 where GPUs are scarce)."
    )

    @property
    def gpu_memory_mib_per_device(self) -> int:
        """The memory each GPU needs, in MiB (the unit of ``nvidia.com/gpu.memory``); GB are decimal."""
        return (self.gpu_memory_gb * _GB) // (max(self.gpus, 1) * _MIB)


class KnownModel(_Model):
    """A model the catalog knows: its task, size, and optionally a fixed tier."""

    id: str
    task: str = Field(pattern=TASK_PATTERN)
    params: int | None = Field(default=None, gt=0, description="Parameter count.")
    tier: str | None = None
    image: str | None = Field(
        default=None, min_length=1, description="Runtime image for this model (default: its family's)."
    )
    token_secret: SecretKeySelector | None = Field(
        default=None, description="Secret key with the hub token of a gated model (becomes `HF_TOKEN`)."
    )
    cache: ModelCache | None = Field(default=None, description="Persistent model cache for this model's clusters.")
    rollout: Rollout | None = Field(default=None, description="Rollout strategy for this model's clusters.")
    meter_price: float | None = Field(
        default=None, ge=0, description="Price of this model's inference, $ per second (default: its tier's)."
    )

    @model_validator(mode="after")
    def _id_shape(self) -> KnownModel:
        if not is_model_id(self.id):
            raise ValueError(f"model id must be shaped org/name, got {self.id!r}")
        return self


MeterPrice = Annotated[float, Field(ge=0)]


class Prices(_Model):
    """The two price tables by tier ($ per second of inference): language models, and all other models."""

    language: dict[str, MeterPrice] = Field(default_factory=dict, description="Tier name -> $/s of language models.")
    other: dict[str, MeterPrice] = Field(default_factory=dict, description="Tier name -> $/s of all other models.")


class Catalog(_Model):
    """Everything the operator needs to turn a model id into pod requirements."""

    families: dict[str, Family]
    tiers: tuple[Tier, ...] = Field(min_length=1)
    default_tier: str
    models: tuple[KnownModel, ...] = ()
    token_secret: SecretKeySelector | None = Field(
        default=None, description="Secret key with a hub token for every cluster (becomes `HF_TOKEN`)."
    )
    image_pull_secrets: tuple[PullSecretName, ...] = Field(
        default=(), description="Secrets for pulling every runtime image."
    )
    cache: ModelCache | None = Field(
        default=None, description="Persistent model cache for every cluster, e.g. one shared ReadWriteMany claim."
    )
    prices: Prices = Field(default_factory=Prices, description="Inference prices by tier (the meters).")

    @model_validator(mode="before")
    @classmethod
    def _family_tasks(cls, data: Any) -> Any:
        """A family without ``tasks`` serves the tasks the task table gives its name."""
        if not isinstance(data, dict) or not isinstance(data.get("families"), dict):
            return data
        families = {
            name: {**family, "tasks": list(tasks_of_family(name))}
            if isinstance(family, dict) and "tasks" not in family
            else family
            for name, family in data["families"].items()
        }
        return {**data, "families": families}

    @model_validator(mode="after")
    def _consistent(self) -> Catalog:
        tier_names = {tier.name for tier in self.tiers}
        if self.default_tier not in tier_names:
            raise ValueError(f"defaultTier {self.default_tier!r} is not a tier")
        owners: dict[str, str] = {}
        for name, family in self.families.items():
            for task in family.tasks:
                if task not in TASKS:
                    raise ValueError(f"family {name!r} lists unknown task {task!r}")
                if task in owners:
                    raise ValueError(f"task {task!r} is in families {owners[task]!r} and {name!r}")
                owners[task] = name
        for model in self.models:
            if model.task not in owners:
                raise ValueError(f"model {model.id!r} has task {model.task!r}, which no family serves")
            if model.tier is not None and model.tier not in tier_names:
                raise ValueError(f"model {model.id!r} has unknown tier {model.tier!r}")
        for table, prices in (("language", self.prices.language), ("other", self.prices.other)):
            unknown = sorted(set(prices) - tier_names)
            if unknown:
                raise ValueError(f"prices.{table} names unknown tiers: {', '.join(unknown)}")
        return self

    @property
    def tasks(self) -> list[str]:
        """Every task some family serves, sorted."""
        return sorted(task for family in self.families.values() for task in family.tasks)

    def family_of(self, task: str) -> str | None:
        return next((name for name, family in self.families.items() if task in family.tasks), None)

    def tier(self, name: str) -> Tier:
        return next(tier for tier in self.tiers if tier.name == name)

    def model(self, model_id: str) -> KnownModel | None:
        """The entry for ``model_id``: the exact id first, then one differing only in case (two dict lookups)."""
        exact, folded = self._model_index
        known = exact.get(model_id)
        return known if known is not None else folded.get(model_id.casefold())

    @cached_property
    def _model_index(self) -> tuple[dict[str, KnownModel], dict[str, KnownModel]]:
        """The models by id and by case-folded id (the first listed wins, as a scan in order would find it)."""
        exact: dict[str, KnownModel] = {}
        folded: dict[str, KnownModel] = {}
        for model in self.models:
            exact.setdefault(model.id, model)
            folded.setdefault(model.id.casefold(), model)
        return exact, folded

    def tier_of(self, model: KnownModel | None) -> Tier:
        """The tier a model runs on: its own, else the one its size needs, else the default tier."""
        if model is not None and model.tier:
            return self.tier(model.tier)
        if model is not None and model.params:
            return self.tier_for_params(model.params)
        return self.tier(self.default_tier)

    def tier_for_params(self, params: int) -> Tier:
        """The smallest tier whose GPU memory holds the model; the largest when none does."""
        needed_gb = params * BYTES_PER_PARAM * HEADROOM / _GB
        by_size = sorted(self.tiers, key=lambda tier: tier.gpu_memory_gb)
        return next((tier for tier in by_size if tier.gpu_memory_gb >= needed_gb), by_size[-1])
