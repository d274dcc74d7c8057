"""The gateway's settings: flags of ``modelcluster gateway`` or ``MODELCLUSTER_GATEWAY_*`` variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_PORT = 8080
DEFAULT_METRICS_PORT = 8083
DEFAULT_KEY_MAX_STALENESS_S = 60.0
RUNTIME_PORT = 8000


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MODELCLUSTER_GATEWAY_", extra="forbid")

    host: str = Field(default="0.0.0.0", description="Address to listen on.")
    port: int = Field(default=DEFAULT_PORT, ge=0, le=65535, description="Port of the API, /health and /ready.")
    metrics_port: int = Field(
        default=DEFAULT_METRICS_PORT, ge=0, le=65535, description="Port of /metrics (Prometheus), apart from the API."
    )
    key_namespace: str = Field(default="modelcluster-system", description="Namespace of the API key Secrets.")
    catalog: tuple[Path, ...] = Field(default=(), description="Catalog files layered over the default catalog.")
    max_body_bytes: int = Field(default=32 * 1024 * 1024, ge=1024, description="Largest request body (413 above).")
    hold_limit: int = Field(default=1000, ge=0, description="Requests one model may hold while it wakes (429 above).")
    hold_timeout_s: float = Field(
        default=300.0, gt=0, description="How long a request waits for a ready pod (503 with Retry-After after)."
    )
    per_pod_limit: int = Field(
        default=32, ge=1, description="In-flight requests per pod; more wait in the gateway for a free slot."
    )
    upstream_timeout_s: float = Field(default=600.0, gt=0, description="Longest wait for a pod's answer (504).")
    connect_timeout_s: float = Field(default=2.0, gt=0, description="Connecting to a pod; refused -> next pod.")
    connect_attempts: int = Field(default=3, ge=1, description="Pods tried when connecting fails.")
    wake_interval_s: float = Field(default=10.0, gt=0, description="Least time between two wakes of one cluster.")
    key_max_staleness_s: float = Field(
        default=DEFAULT_KEY_MAX_STALENESS_S,
        gt=0,
        description="Longest time the API key table may go unconfirmed by the apiserver before API requests get 503.",
    )
    replicas: int = Field(default=1, ge=1, description="Gateway replicas sharing each key's concurrency limit.")
