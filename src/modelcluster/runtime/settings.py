"""Runtime configuration, read from the environment."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Engine = Literal["auto", "transformers", "vllm"]


class RuntimeSettings(BaseSettings):
    """Everything the server needs to know; each field is an environment variable of the same name."""

    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    model_id: str = Field(description="A hub model id or a local model directory.")
    task: str = Field(description="The task to serve, e.g. text-generation or feature-extraction.")
    host: str = "0.0.0.0"
    port: int = Field(default=8000, ge=1, le=65535)
    device: str = Field(default="auto", description="auto (CUDA when present, else CPU), cpu, cuda, cuda:1, mps.")
    dtype: str = Field(default="auto", description="auto, float32, float16 or bfloat16.")
    cache_dir: Path | None = Field(default=None, description="Where hub downloads are kept (a mounted volume).")
    engine: Engine = Field(default="auto", description="LLM engine for generation tasks: auto, transformers, vllm.")
    model_loading_kwargs_json: dict[str, Any] = Field(
        default_factory=dict, description="Extra keyword arguments for from_pretrained (JSON object)."
    )
    trust_remote_code: bool = False

    max_queue: int = Field(default=64, ge=0, description="Requests allowed to wait for the model; more answer 429.")
    max_batch_size: int = Field(default=32, ge=1)
    max_batch_wait_ms: float = Field(default=5.0, ge=0)
    request_timeout_s: float = Field(default=300.0, gt=0)
    max_body_bytes: int = Field(default=32 * 1024 * 1024, ge=1024)
    max_media_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    url_fetch_timeout_s: float = Field(default=30.0, gt=0)
    torch_threads: int | None = Field(default=None, ge=1, description="CPU threads for torch; unset keeps its default.")

    @field_validator("dtype")
    @classmethod
    def _known_dtype(cls, value: str) -> str:
        allowed = {"auto", "float32", "float16", "bfloat16"}
        if value not in allowed:
            raise ValueError(f"dtype must be one of {sorted(allowed)}")
        return value
