"""Model directories without torch: which config and weights a name means, and the fingerprint of both.

A model is a profile name (audiosearch.models.profiles) or a directory holding config.json + model.safetensors. The
shipped checkpoints live in models/checkpoints/<profile>/. The fingerprint identifies what produces the
vectors: an index refuses queries from another fingerprint. Both the torch model (audiosearch.models.checkpoint) and the
slim runtime (audiosearch.models.slim) resolve models here, so they agree on every fingerprint.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from audiosearch.core.errors import ModelLoadError
from audiosearch.models.config import ModelConfig
from audiosearch.models.profiles import ALIASES, CHECKPOINTS, PROFILES, profile

CONFIG, WEIGHTS = "config.json", "model.safetensors"


@dataclass
class ModelSource:
    """What `name_or_path` resolves to: its config and, for a directory, where its weights are."""

    config: ModelConfig
    directory: Path | None  # None: a bare profile (no trained weights stored)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.directory, self.config)

    def weights(self) -> dict[str, np.ndarray]:
        """The stored tensors as numpy arrays ({} for a bare profile)."""
        if self.directory is None:
            return {}
        from safetensors.numpy import load_file

        try:
            return load_file(str(self.directory / WEIGHTS))
        except Exception as err:
            raise ModelLoadError(f"{self.directory / WEIGHTS}: cannot read weights ({err})") from None


def resolve(name_or_path: str | Path) -> ModelSource:
    """'lite', 'paper', ... (the shipped checkpoint if one exists, else the bare profile) or a directory."""
    directory = _directory(name_or_path)
    config = profile(str(name_or_path)) if directory is None else read_config(directory)
    return ModelSource(config, directory)


def _directory(name_or_path: str | Path) -> Path | None:
    path = Path(name_or_path)
    if (path / CONFIG).is_file():
        return path
    name = str(name_or_path)
    stored = ALIASES.get(name, name)  # 'lite' names the default profile's checkpoint
    if (CHECKPOINTS / stored / CONFIG).is_file():
        return CHECKPOINTS / stored
    if name in PROFILES:
        return None
    if path.exists():
        raise ModelLoadError(f"{path} is not a model directory (no {CONFIG})")
    raise ModelLoadError(f"unknown model {name!r}: use one of {', '.join(PROFILES)} or a model directory")


def read_config(directory: Path) -> ModelConfig:
    try:
        return ModelConfig.from_dict(json.loads((directory / CONFIG).read_text()))
    except (OSError, json.JSONDecodeError) as err:
        raise ModelLoadError(f"{directory / CONFIG}: {err}") from None


def fingerprint(directory: Path | None, config: ModelConfig) -> str:
    """Stable id of what produces the vectors: the config and the stored weights' bytes."""
    h = hashlib.sha256(json.dumps(config.to_dict(), sort_keys=True).encode())
    if directory is not None:
        with open(directory / WEIGHTS, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return f"{config.name}-{h.hexdigest()[:16]}"
