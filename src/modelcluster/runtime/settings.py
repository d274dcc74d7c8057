"""Runtime configuration, read from the environment."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from modelcluster.api.pod_auth import is_verifier
from modelcluster.runtime.limits import DEFAULT_LIMITS, Limits
from modelcluster.runtime.urlfetch import UrlPolicy

Engine = Literal["auto", "transformers", "vllm"]


class RuntimeSettings(BaseSettings):
    """Everything the server needs to know; each field is an environment variable of the same name."""

    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    model_id: str = Field(
        default="",
        description="A hub model id (org/name), or a local model directory under a model root (see model_roots); "
        "required unless STANDBY_FAMILY is set.",
    )
    task: str = Field(default="", description="The task to serve, e.g. text-generation; required unless standby.")
    standby_family: str | None = Field(
        default=None,
        description="Run as a warm standby of this family (text, llm, ...): libraries imported, device ready, no "
        "model until POST /admin/load names one.",
    )
    admin_token: SecretStr | None = Field(default=None, description="Bearer token of POST /admin/load.")
    admin_token_file: Path | None = Field(default=None, description="A file holding that token (a Secret volume).")
    host: str = "0.0.0.0"
    port: int = Field(default=8000, ge=1, le=65535)
    device: str = Field(default="auto", description="auto (CUDA when present, else CPU), cpu, cuda, cuda:1, mps.")
    dtype: str = Field(default="auto", description="auto, float32, float16 or bfloat16.")
    cache_dir: Path | None = Field(default=None, description="Where hub downloads are kept (a mounted volume).")
    hf_home: Path | None = Field(default=None, description="The hub library's home (HF_HOME); a model root.")
    model_dirs: Annotated[list[Path], NoDecode] = Field(
        default_factory=list,
        description="Directories (comma-separated) whose subdirectories MODEL_ID may name as local models, besides "
        "CACHE_DIR and HF_HOME.",
    )
    engine: Engine = Field(default="auto", description="LLM engine for generation tasks: auto, transformers, vllm.")
    model_loading_kwargs_json: dict[str, Any] = Field(
        default_factory=dict, description="Extra keyword arguments for from_pretrained (JSON object)."
    )
    trust_remote_code: bool = False
    gpu_count: int = Field(
        default=1,
        ge=1,
        le=64,
        description="GPUs of the pod: more than one spreads the model over them (vLLM tensor parallelism, "
        "transformers device_map=auto).",
    )
    termination_message_path: Path = Field(
        default=Path("/dev/termination-log"),
        description="Where a fatal load error's cause is written, when the file exists (Kubernetes creates it).",
    )

    max_queue: int = Field(default=64, ge=0, description="Requests allowed to wait for the model; more answer 429.")
    max_batch_size: int = Field(default=32, ge=1)
    max_batch_wait_ms: float = Field(default=5.0, ge=0)
    request_timeout_s: float = Field(default=300.0, gt=0)
    drain_delay_s: float = Field(
        default=5.0, ge=0, description="After SIGTERM: unready but still serving, while routers drop this pod."
    )
    drain_timeout_s: float = Field(
        default=300.0, gt=0, description="After the drain delay: longest wait for in-flight requests and streams."
    )
    max_body_bytes: int = Field(default=32 * 1024 * 1024, ge=1024)
    max_media_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    url_fetch_timeout_s: float = Field(default=30.0, gt=0, description="Total time for fetching one media URL.")
    url_max_redirects: int = Field(default=5, ge=0, le=20)
    url_allowlist: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="CIDRs, IPs or host names (`*.suffix` too) that media URLs may reach although they are internal; "
        "comma-separated. Cloud metadata addresses stay refused.",
    )
    max_media_blocks: int = Field(default=DEFAULT_LIMITS.max_media_blocks, ge=1)
    max_items: int = Field(default=DEFAULT_LIMITS.max_items, ge=1, description="`text` list items / labels.")
    max_video_frames: int = Field(default=DEFAULT_LIMITS.max_video_frames, ge=1, description="Frames decoded.")
    max_audio_seconds: float = Field(default=DEFAULT_LIMITS.max_audio_seconds, gt=0)
    max_audio_samples: int = Field(
        default=DEFAULT_LIMITS.max_audio_samples, ge=1, description="Decoded audio samples (frames x channels)."
    )
    max_image_pixels: int = Field(
        default=DEFAULT_LIMITS.max_image_pixels, ge=1, description="Pixels of an input image (width x height)."
    )
    max_new_tokens: int = Field(default=DEFAULT_LIMITS.max_new_tokens, ge=1)
    max_num_beams: int = Field(default=DEFAULT_LIMITS.max_num_beams, ge=1)
    max_image_side: int = Field(default=DEFAULT_LIMITS.max_image_side, ge=8, description="Generated pixels a side.")
    max_diffusion_steps: int = Field(default=DEFAULT_LIMITS.max_diffusion_steps, ge=1)
    max_diffusion_frames: int = Field(default=DEFAULT_LIMITS.max_diffusion_frames, ge=1)
    torch_threads: int | None = Field(default=None, ge=1, description="CPU threads for torch; unset keeps its default.")
    credential_sha256: str | None = Field(
        default=None,
        description="SHA-256 (hex) of the credential callers must present as `Authorization: Bearer`; set by the "
        "operator. Unset: every caller is served (a runtime run by hand).",
    )

    @field_validator("credential_sha256")
    @classmethod
    def _valid_verifier(cls, value: str | None) -> str | None:
        if value is not None and not is_verifier(value):
            raise ValueError("credential_sha256 must be 64 lowercase hex digits")
        return value

    @field_validator("url_allowlist", mode="before")
    @classmethod
    def _split_allowlist(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [entry.strip() for entry in value.split(",") if entry.strip()]
        return value

    @field_validator("model_dirs", mode="before")
    @classmethod
    def _split_model_dirs(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [entry.strip() for entry in value.split(",") if entry.strip()]
        return value

    def model_roots(self) -> list[Path]:
        """The directories a local MODEL_ID must lie in (after resolving symlinks): CACHE_DIR, HF_HOME, MODEL_DIRS."""
        given = [self.cache_dir, self.hf_home, *self.model_dirs]
        return list(dict.fromkeys(path.expanduser().resolve() for path in given if path is not None))

    @field_validator("url_allowlist")
    @classmethod
    def _valid_allowlist(cls, value: list[str]) -> list[str]:
        UrlPolicy.from_allowlist(value)  # raises ValueError naming a malformed entry
        return value

    @model_validator(mode="after")
    def _model_or_standby(self) -> RuntimeSettings:
        if self.standby_family is None and not (self.model_id and self.task):
            raise ValueError("MODEL_ID and TASK are required (or STANDBY_FAMILY for a standby runtime)")
        return self

    def admin_secret(self) -> str | None:
        """The token POST /admin/load requires (ADMIN_TOKEN_FILE's content, else ADMIN_TOKEN); None: no admin call."""
        if self.admin_token_file is not None:
            token = self.admin_token_file.read_text().strip()
            return token or None
        return self.admin_token.get_secret_value() if self.admin_token is not None else None

    def limits(self) -> Limits:
        return Limits(**{name: getattr(self, name) for name in Limits.__dataclass_fields__})

    def url_policy(self) -> UrlPolicy:
        return UrlPolicy.from_allowlist(
            self.url_allowlist,
            timeout_s=self.url_fetch_timeout_s,
            max_redirects=self.url_max_redirects,
            max_bytes=self.max_media_bytes,
        )

    @field_validator("dtype")
    @classmethod
    def _known_dtype(cls, value: str) -> str:
        allowed = {"auto", "float32", "float16", "bfloat16"}
        if value not in allowed:
            raise ValueError(f"dtype must be one of {sorted(allowed)}")
        return value
