"""Typed model configuration, written next to the weights as config.json."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from audiosearch.core.errors import ModelLoadError

AGGREGATES = ("none", "mean")
LATER_FIELDS: dict[str, Any] = {"aggregate": "none", "aggregate_seconds": 30.0}


@dataclass
class TowerConfig:
    kind: str  # key in audiosearch.models.towers.modules.base.AUDIO_TOWERS / TEXT_TOWERS
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class ModelConfig:
    name: str
    audio: TowerConfig
    text: TowerConfig
    embed_dim: int = 1024
    projection: str = "linear"  # "linear" (paper) or "mlp"
    temperature_init: float = 0.01  # reference 2023 scripts; learnable unless told otherwise
    learn_temperature: bool = True
    window_seconds: float = 10.0
    hop_seconds: float = 10.0
    # Towers whose weights come from their own source (a package, a hub name) are not stored in
    # model.safetensors; only trained parts are, which keeps the shipped lite checkpoint small.
    frozen_towers: list[str] = field(default_factory=list)
    # Earlier fingerprints of these same vectors stored zero-padded to more dimensions ({"fingerprint", "dim"};
    # lite before vectors had a dimension per profile): their indexes still answer this model's queries,
    # padded, and their cached vectors convert without embedding anything again.
    supersedes: list[dict[str, Any]] = field(default_factory=list)
    # How a file is embedded as a whole (audiosearch.models.aggregate). "none": one vector per window, the best window
    # answers for its file. "mean": a file up to `aggregate_seconds` long is one vector, the normalised mean of
    # its windows' projected vectors with every started window counted (the reference's clip embedding: first
    # segment up to 10 s, mean of two up to 20 s, of three up to 30 s); longer files keep one per window.
    aggregate: str = "none"
    aggregate_seconds: float = 30.0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        # Fields added after models shipped are left out at their defaults: the fingerprint hashes this dict,
        # and an unchanged model must keep its fingerprint (and its indexes).
        for name, default in LATER_FIELDS.items():
            if data[name] == default:
                del data[name]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        try:
            data = dict(data)
            data["audio"] = TowerConfig(**data["audio"])
            data["text"] = TowerConfig(**data["text"])
            cfg = cls(**data)
        except (KeyError, TypeError) as err:
            raise ModelLoadError(f"invalid model config: {err}") from None
        cfg.validate()
        return cfg

    def validate(self) -> None:
        if self.projection not in ("linear", "mlp", "tied"):
            raise ModelLoadError(f"projection must be 'linear', 'mlp' or 'tied', got {self.projection!r}")
        if self.embed_dim <= 0 or self.temperature_init <= 0:
            raise ModelLoadError("embed_dim and temperature_init must be positive")
        if self.window_seconds <= 0 or self.hop_seconds <= 0:
            raise ModelLoadError("window_seconds and hop_seconds must be positive")
        for old in self.supersedes:
            if not isinstance(old, dict) or not isinstance(old.get("fingerprint"), str) or old.get("dim", 0) <= 0:
                raise ModelLoadError(f"supersedes entries need a fingerprint and a dim, got {old!r}")
            if old["dim"] < self.embed_dim:
                raise ModelLoadError(f"a superseded model must have at least embed_dim dimensions, got {old!r}")
        if self.aggregate not in AGGREGATES:
            raise ModelLoadError(f"aggregate must be one of {', '.join(AGGREGATES)}, got {self.aggregate!r}")
        if self.aggregate_seconds <= 0:
            raise ModelLoadError("aggregate_seconds must be positive")
        unknown = set(self.frozen_towers) - {"audio", "text"}
        if unknown:
            raise ModelLoadError(f"frozen_towers may name 'audio' and 'text' only, got {sorted(unknown)}")
