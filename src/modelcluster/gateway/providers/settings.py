"""Which providers the gateway passes closed models through to, where they are, and how long and how many.

Set with ``MODELCLUSTER_GATEWAY_PROVIDERS`` (JSON, e.g. ``{"mistral": {"enabled": false}}`` or
``{"openai": {"base_url": "http://proxy.internal:4000/v1"}}``); a provider left out keeps its defaults.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, model_validator

PROVIDER_NAMES = ("openai", "anthropic", "google", "cohere", "mistral")


class ProviderSettings(BaseModel):
    """One provider: on or off, its base URL (the provider's own when unset), its timeouts and concurrency."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(default=True, description="Whether model ids of this org go to the provider.")
    base_url: HttpUrl | None = Field(
        default=None, description="The provider's API base (a proxy or a compatible endpoint); its own when unset."
    )
    connect_timeout_s: float = Field(default=5.0, gt=0, description="Connecting to the provider (504 after).")
    first_byte_timeout_s: float = Field(
        default=60.0, gt=0, description="From sending the request to the answer's headers (504 after)."
    )
    total_timeout_s: float = Field(default=600.0, gt=0, description="A whole answer, streamed ones too (504 after).")
    concurrency: int = Field(
        default=256, ge=1, description="Connections open to the provider at once; more requests wait for one."
    )
    keepalive_s: float = Field(
        default=15.0, gt=0, description="On the OpenAI routes, an SSE comment after this long of provider silence."
    )


class ProvidersSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    openai: ProviderSettings = Field(default_factory=ProviderSettings)
    anthropic: ProviderSettings = Field(default_factory=ProviderSettings)
    google: ProviderSettings = Field(default_factory=ProviderSettings)
    cohere: ProviderSettings = Field(default_factory=ProviderSettings)
    mistral: ProviderSettings = Field(default_factory=ProviderSettings)

    @model_validator(mode="after")
    def _first_byte_within_total(self) -> ProvidersSettings:
        for name in PROVIDER_NAMES:
            settings = self.of(name)
            if settings.first_byte_timeout_s > settings.total_timeout_s:
                raise ValueError(f"{name}: first_byte_timeout_s is longer than total_timeout_s")
        return self

    def of(self, name: str) -> ProviderSettings:
        value = getattr(self, name)
        assert isinstance(value, ProviderSettings)
        return value

    @property
    def enabled(self) -> tuple[str, ...]:
        return tuple(name for name in PROVIDER_NAMES if self.of(name).enabled)
