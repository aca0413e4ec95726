"""Service configuration: one pydantic-settings class, read from AUDIOSEARCH_* environment variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AUDIOSEARCH_", env_file=None, extra="ignore")

    index_dir: Path = Path("index")
    model: str = Field("lite", description="'lite', 'paper' or a model directory; must match the index")
    device: str = "cpu"
    onnx_dir: Path | None = Field(None, description="text-encoder export from `audiosearch export-onnx`")
    admin_token: str | None = Field(None, description="bearer token for /admin and /train; unset disables them")
    cors_origins: list[str] = Field(default_factory=list, description="origins allowed to call the API (widget)")
    max_k: int = 100
    max_query_chars: int = 1000
    max_batch_queries: int = 64
    max_upload_bytes: int = 20 * 1024 * 1024
    query_cache_size: int = 4096
    threads: int = 0  # 0: one per core

    @field_validator("admin_token")
    @classmethod
    def _token_strength(cls, v: str | None) -> str | None:
        if v is not None and v.strip() == "":
            return None
        if v is not None and len(v) < 16:
            raise ValueError("AUDIOSEARCH_ADMIN_TOKEN must be at least 16 characters")
        return v

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, v: object) -> object:
        if isinstance(v, str) and not v.strip().startswith("["):
            return [o.strip() for o in v.split(",") if o.strip()]
        return v
