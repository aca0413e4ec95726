"""Save and load a DualEncoder as a directory: config.json + model.safetensors."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from models.atomic import atomic_directory
from models.config import ModelConfig
from models.dual_encoder import DualEncoder
from models.errors import ModelLoadError
from models.onnx_audio import attach_audio_onnx
from models.profiles import ALIASES, CHECKPOINTS, PROFILES, profile

log = logging.getLogger(__name__)
CONFIG, WEIGHTS = "config.json", "model.safetensors"


def save_model(model: DualEncoder, directory: str | Path) -> Path:
    """Write atomically: a crash mid-save leaves any earlier checkpoint at `directory` intact."""
    directory = Path(directory)
    with atomic_directory(directory) as tmp:
        (tmp / CONFIG).write_text(json.dumps(model.config.to_dict(), indent=2))
        save_file(_trained_state(model), str(tmp / WEIGHTS))
    return directory


def _trained_state(model: DualEncoder) -> dict[str, torch.Tensor]:
    skip = tuple(f"{side}_tower." for side in model.config.frozen_towers)
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items() if not k.startswith(skip)}


def load_model(
    name_or_path: str | Path = "lite",
    device: str | torch.device = "cpu",
    audio_options: dict[str, Any] | None = None,
    text_options: dict[str, Any] | None = None,
) -> DualEncoder:
    """'lite' / 'paper' (the shipped checkpoint if one exists, else the bare profile) or a directory.

    audio_options / text_options override tower options, e.g. a local PaSST checkpoint or RoBERTa dir.
    """
    directory = _resolve(name_or_path)
    config = profile(str(name_or_path)) if directory is None else _read_config(directory)
    config.audio.options.update(audio_options or {})
    config.text.options.update(text_options or {})
    model = DualEncoder(config)
    if directory is not None:
        _load_weights(model, directory)
    model.fingerprint = fingerprint(directory, config)
    model = model.to(torch.device(device)).eval()
    if model.device.type == "cpu":  # onnxruntime's CPU graph; on a GPU torch is the fast path
        attach_audio_onnx(model)  # an `export-onnx --audio` directory named by $AUDIOSEARCH_ONNX_DIR, if any
    return model


def _resolve(name_or_path: str | Path) -> Path | None:
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


def _read_config(directory: Path) -> ModelConfig:
    try:
        return ModelConfig.from_dict(json.loads((directory / CONFIG).read_text()))
    except (OSError, json.JSONDecodeError) as err:
        raise ModelLoadError(f"{directory / CONFIG}: {err}") from None


def _load_weights(model: DualEncoder, directory: Path) -> None:
    try:
        state = load_file(str(directory / WEIGHTS))
    except Exception as err:
        raise ModelLoadError(f"{directory / WEIGHTS}: cannot read weights ({err})") from None
    missing, unexpected = model.load_state_dict(state, strict=False)
    frozen = tuple(f"{side}_tower." for side in model.config.frozen_towers)
    missing = [k for k in missing if not k.startswith(frozen)]
    if missing or unexpected:
        raise ModelLoadError(
            f"{directory}: weights do not match the config (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )


def fingerprint(directory: Path | None, config: ModelConfig) -> str:
    """Stable id of what produces the vectors; an index refuses queries from another fingerprint."""
    h = hashlib.sha256(json.dumps(config.to_dict(), sort_keys=True).encode())
    if directory is not None:
        with open(directory / WEIGHTS, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return f"{config.name}-{h.hexdigest()[:16]}"
