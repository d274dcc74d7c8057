"""The gateway's settings: flags of ``modelcluster gateway`` or ``MODELCLUSTER_GATEWAY_*`` variables."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from modelcluster.api.health import MAX_HEALTH_WAIT_S
from modelcluster.api.json_limits import JsonLimits
from modelcluster.gateway.metering.budgets import Budget
from modelcluster.gateway.providers.settings import ProvidersSettings

DEFAULT_PORT = 8080
DEFAULT_METRICS_PORT = 8083
DEFAULT_KEY_MAX_STALENESS_S = 60.0
RUNTIME_PORT = 8000


def default_ledger_url() -> str:
    """An SQLite file in the user's cache (``$MODELCLUSTER_CACHE`` or ``~/.cache/modelcluster``)."""
    root = os.environ.get("MODELCLUSTER_CACHE")
    cache = Path(root) if root else Path.home() / ".cache" / "modelcluster"
    return f"sqlite+aiosqlite:///{cache / 'usage.sqlite'}"


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
    max_json_depth: int = Field(default=32, ge=2, description="Deepest nesting of arrays and objects in a body (413).")
    max_json_items: int = Field(
        default=10_000, ge=16, description="Most array elements and object members in a body, all levels (413)."
    )
    max_json_string_bytes: int = Field(
        default=32 * 1024 * 1024, ge=1024, description="Longest string in a body, escaped (413); bytes: max_body_bytes."
    )
    max_params_keys: int = Field(default=64, ge=1, description="Most members of a body's `params` object (413).")
    max_params_bytes: int = Field(default=64 * 1024, ge=256, description="Largest `params` value, as sent (413).")
    offload_parse_bytes: int = Field(
        default=256 * 1024, ge=0, description="Bodies above this size are checked and parsed off the event loop."
    )
    client_header_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="A connection's time to send a request's headers, from connecting or its previous answer; "
        "idle keep-alive connections close after it too.",
    )
    client_body_timeout_s: float = Field(default=60.0, gt=0, description="A client's time to send its body (408).")
    max_answer_bytes: int = Field(
        default=64 * 1024 * 1024, ge=1024, description="Largest non-streamed answer of a model pod (502 above)."
    )
    hold_bytes_per_namespace: int = Field(
        default=128 * 1024 * 1024, ge=0, description="Body bytes one tenant namespace may have held (429 above)."
    )
    hold_bytes_total: int = Field(
        default=512 * 1024 * 1024, ge=0, description="Body bytes all held requests together may keep (429 above)."
    )
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
    start_probe_interval_s: float = Field(
        default=0.15, gt=0, le=10, description="How often the gateway probes the starting pods of a waking cluster."
    )
    start_probe_wait_s: float = Field(
        default=1.0,
        ge=0,
        le=MAX_HEALTH_WAIT_S,
        description="How long a probe asks a loading pod to hold its answer until it can serve (0: plain polls).",
    )
    start_probe_timeout_s: float = Field(
        default=0.5, gt=0, description="Longest wait for one such probe's answer, beyond the hold it asked for."
    )
    start_probe_pods: int = Field(default=8, ge=0, description="Starting pods probed per cluster (0: wait for Ready).")
    start_probe_concurrency: int = Field(default=64, ge=1, description="Probes of starting pods in flight, in all.")
    key_max_staleness_s: float = Field(
        default=DEFAULT_KEY_MAX_STALENESS_S,
        gt=0,
        description="Longest time the API key table may go unconfirmed by the apiserver before API requests get 503.",
    )
    replicas: int = Field(
        default=1, ge=1, description="Gateway replicas sharing each key's concurrency limit, without peers_service."
    )
    peers_service: tuple[str, str] | None = Field(
        default=None,
        description="(namespace, name) of the gateway's own Service: its ready endpoints are the replicas sharing "
        "each key's limit (gateway/peers.py).",
    )
    bootstrap_tenant: str | None = Field(
        default=None, description="The tenant of the bootstrap key (MODELCLUSTER_GATEWAY_BOOTSTRAP_KEY), if any."
    )
    bootstrap_concurrency: int = Field(default=64, ge=1, description="The bootstrap key's concurrency limit.")
    ledger_url: str = Field(
        default_factory=lambda: default_ledger_url(),
        description="The usage ledger's database: sqlite+aiosqlite:///FILE (one gateway) or "
        "postgresql+asyncpg://... (several replicas); empty: no ledger (and no budgets).",
    )
    ledger_batch_size: int = Field(default=500, ge=1, description="Most usage rows written in one batch.")
    ledger_flush_interval_s: float = Field(default=0.5, gt=0, description="Longest wait before a batch is written.")
    ledger_buffer_rows: int = Field(
        default=100_000, ge=1, description="Usage rows kept while the database is away; more are dropped (counted)."
    )
    shutdown_timeout_s: float = Field(
        default=15.0,
        gt=0,
        le=600,
        description="On SIGTERM, how long requests in flight may take to finish before they are cut (recorded as "
        "499); the ledger is written after them.",
    )
    budget_refresh_s: float = Field(default=2.0, gt=0, description="How often spend is re-read from the ledger.")
    budgets: dict[str, Budget] = Field(
        default_factory=dict,
        description='Budgets by tenant, JSON {"tenant": {"amount": 10, "period": "month"}} (day, week or month).',
    )
    event_loop: Literal["uvloop", "asyncio"] = Field(
        default="uvloop",
        description="The event loop: uvloop (less CPU per request), or the standard library's asyncio "
        "(also where uvloop is not installed).",
    )
    gc_young_threshold: int = Field(
        default=20_000,
        ge=0,
        description="Net allocations between collections of the garbage collector's youngest generation, once "
        "started (gateway/heap.py); 0 keeps Python's default (700).",
    )
    providers: ProvidersSettings = Field(
        default_factory=ProvidersSettings,
        description="Closed-model providers: enabled, base URL, timeouts, concurrency (docs/providers.md).",
    )

    def json_limits(self) -> JsonLimits:
        """The structure a request body may have (:mod:`modelcluster.api.json_limits`)."""
        return JsonLimits(
            max_depth=self.max_json_depth,
            max_items=self.max_json_items,
            max_string_bytes=self.max_json_string_bytes,
            max_params_keys=self.max_params_keys,
            max_params_bytes=self.max_params_bytes,
        )
