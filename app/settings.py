"""Service configuration: one pydantic-settings class, read from AUDIOSEARCH_* environment variables."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AUDIOSEARCH_", env_file=None, extra="ignore")

    index_dir: Path = Path("index")
    model: str = Field("lite", description="'lite', 'paper' or a model directory; must match the index")
    device: str = "cpu"
    onnx_dir: Path | None = Field(None, description="text-encoder export from `audiosearch export-onnx`")
    allow_untrained: bool = Field(
        False, description="serve a model with random (never trained or loaded) parts; refused otherwise"
    )
    admin_token: str | None = Field(None, description="bearer token for /admin and /train; unset disables them")
    # NoDecode: the variable is "https://a.example,https://b.example", not JSON (a JSON list also works).
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="origins allowed to call the API (widget)"
    )
    max_upload_bytes: int = 20 * 1024 * 1024
    query_cache_size: int = 4096
    threads: int = 0  # 0: one per core
    mmap: bool = Field(
        False, description="memory-map the index's vectors instead of reading them into RAM (indexes larger than RAM)"
    )
    jobs_dir: Path = Field(Path("jobs"), description="training jobs: configs, status, checkpoints (POST /train)")
    train_data_root: Path | None = Field(None, description="training data the API may read; unset disables /train")

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
        if isinstance(v, str):
            if v.strip().startswith("["):
                return json.loads(v)
            return [o.strip() for o in v.split(",") if o.strip()]
        return v
