"""Prices: which meter a model runs on, what it costs per second, and what an answer costs.

Pure functions over the catalog (``Pricing = Meter Price x Inference Time``). A language model (chat, text
generation and the chat tasks over images, audio and video) is priced from the catalog's ``language`` table,
every other model from the ``other`` table, by the tier the model runs on; a model entry's ``meterPrice``
overrides both. A tier absent from a table is free (price 0).
"""

from __future__ import annotations

from dataclasses import dataclass

from modelcluster.api.metering import MeterReading
from modelcluster.catalog.schema import Catalog

#: Tasks priced as language models.
LANGUAGE_TASKS = frozenset(
    {"text-generation", "chat", "image-text-to-text", "video-text-to-text", "audio-text-to-text"}
)
LANGUAGE_SUFFIX = "-llm"


@dataclass(frozen=True)
class Meter:
    """The meter of a model: its name (the tier, ``-llm`` for language models) and its price in $/s."""

    name: str
    price: float


def is_language_task(task: str) -> bool:
    return task in LANGUAGE_TASKS


def meter_name(tier: str, task: str) -> str:
    return tier + LANGUAGE_SUFFIX if is_language_task(task) else tier


def meter_of(catalog: Catalog, model_id: str, task: str) -> Meter:
    """The meter of ``model_id`` serving ``task``; a model the catalog does not list runs on the default tier."""
    model = catalog.model(model_id)
    tier = catalog.tier_of(model).name
    if model is not None and model.meter_price is not None:
        return Meter(meter_name(tier, task), model.meter_price)
    table = catalog.prices.language if is_language_task(task) else catalog.prices.other
    return Meter(meter_name(tier, task), table.get(tier, 0.0))


def cost(price: float, seconds: float) -> float:
    """What ``seconds`` of inference cost at ``price`` $/s."""
    return price * seconds


def reading(meter: Meter, seconds: float) -> MeterReading:
    """The four figures of an answer that took ``seconds`` of inference on ``meter``."""
    return MeterReading(meter.name, meter.price, seconds, cost(meter.price, seconds))


FREE = Meter("none", 0.0)
