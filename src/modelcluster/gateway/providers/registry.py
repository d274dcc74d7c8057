"""The provider translations by name, and which route a model id takes."""

from __future__ import annotations

from types import MappingProxyType

from modelcluster.gateway.providers import anthropic_api, cohere_api, google_api, mistral_api, openai_api
from modelcluster.gateway.providers.base import Adapter

ADAPTERS: MappingProxyType[str, Adapter] = MappingProxyType(
    {
        "openai": openai_api,
        "anthropic": anthropic_api,
        "google": google_api,
        "cohere": cohere_api,
        "mistral": mistral_api,
    }
)


def provider_of(model_id: str, *, open_model: bool, enabled: tuple[str, ...]) -> str | None:
    """The provider that serves ``model_id`` (``org/name``), or ``None`` for an open model.

    An id the catalog lists, or one the caller has a cluster for, is an open model even under a provider's org
    (``google/flan-t5-base``); any other id whose org is an enabled provider is that provider's closed model.
    """
    org, _, name = model_id.partition("/")
    if open_model or not name or org not in enabled:
        return None
    return org
