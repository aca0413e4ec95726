"""Service configuration: one pydantic-settings class, read from AUDIOSEARCH_* environment variables."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

from pydantic import ByteSize, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class EncoderSettings(BaseSettings):
    """What every command that loads a model reads (index, search, eval), the service included."""

    model_config = SettingsConfigDict(env_prefix="AUDIOSEARCH_", env_file=None, extra="ignore")

    onnx_dir: Path | None = Field(
        None,
        description="an `audiosearch export-onnx` directory for both sides: its text export encodes queries, "
        "its audio export (--audio) audio on the CPU; the CLI's --onnx sets it",
    )


class IndexSettings(BaseSettings):
    """What `audiosearch index --faiss auto` may use (audiosearch.indexer.faiss_index.choose_index)."""

    model_config = SettingsConfigDict(env_prefix="AUDIOSEARCH_", env_file=None, extra="ignore")

    index_memory: ByteSize = Field(
        ByteSize(8 << 30),
        gt=0,
        description="RAM the search index may take (bytes, or '8GB', '512MiB'): Flat while it fits, "
        "else compressed IVF-PQ codes with the full vectors on disk for exact re-ranking; --memory-budget",
    )
    index_flat_max_windows: int = Field(
        250_000, ge=0, description="--faiss auto keeps exact Flat search up to this many windows"
    )

    def policy(self):  # noqa: ANN201 - an indexer IndexPolicy, imported lazily (FAISS)
        from audiosearch.indexer.faiss_index import IndexPolicy

        return IndexPolicy(flat_max_windows=self.index_flat_max_windows, memory_bytes=int(self.index_memory))


class Settings(EncoderSettings):
    model_config = SettingsConfigDict(env_prefix="AUDIOSEARCH_", env_file=None, extra="ignore")

    index_dir: Path = Path("index")
    model: str = Field("lite", description="'lite', 'paper' or a model directory; must match the index")
    device: str = Field("cpu", description="cpu, cuda or auto: where the model runs and the index is searched")
    allow_untrained: bool = Field(
        False, description="serve a model with random (never trained or loaded) parts; refused otherwise"
    )
    admin_token: str | None = Field(None, description="bearer token for /admin and /train; unset disables them")
    # NoDecode: the variable is "https://a.example,https://b.example", not JSON (a JSON list also works).
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="origins allowed to call the API (widget)"
    )
    max_upload_bytes: int = Field(20 * 1024 * 1024, ge=1, description="query-by-example upload cap (compressed bytes)")
    max_query_seconds: float = Field(
        30.0, gt=0, le=3600, description="query by example reads at most this many seconds from the upload's start"
    )
    max_body_bytes: int = Field(1024 * 1024, ge=1024, description="cap on any other request body (JSON)")
    # Heavy routes: at most this many at work at once; as many again may wait, beyond that 429 + Retry-After.
    concurrent_by_audio: int = Field(2, ge=1, description="POST /search/by-audio requests at work at once")
    concurrent_batch: int = Field(4, ge=1, description="POST /search/batch requests at work at once")
    concurrent_eval: int = Field(1, ge=1, description="POST /eval runs at once (no queue: each may take minutes)")
    concurrent_search: int = Field(
        256, ge=1, description="GET/POST /search requests admitted at once, waiting for their batch included"
    )
    max_training_jobs: int = Field(1, ge=1, description="training jobs running at once (POST /train beyond: 429)")
    max_eval_clips: int = Field(5000, ge=1, description="POST /eval refuses larger sets (use `audiosearch eval`)")
    watch_index_s: float = Field(
        2.0, ge=0, description="poll the index's CURRENT this often and switch to a rebuilt snapshot; 0: off"
    )
    query_cache_size: int = 4096
    batch_max_size: int = Field(32, ge=1, le=1024, description="text queries gathered into one forward + search")
    batch_max_wait_ms: float = Field(
        2.0, ge=0, le=1000, description="while a batch runs, how long the next one waits for more queries (idle: none)"
    )
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


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment and `overrides`; a bad AUDIOSEARCH_* value is one line, not a traceback."""
    return _load(Settings, overrides)


def load_index_settings(**overrides: object) -> IndexSettings:
    return _load(IndexSettings, overrides)


def _load(cls: type, overrides: dict[str, object]):  # noqa: ANN202
    try:
        return cls(**overrides)
    except ValidationError as err:
        from audiosearch.core.errors import InvalidInputError

        e = err.errors()[0]
        name = "AUDIOSEARCH_" + "_".join(str(x) for x in e["loc"]).upper()
        raise InvalidInputError(f"{name}: {str(e['msg']).removeprefix('Value error, ')}") from None
