"""Save and load the torch DualEncoder as a directory: config.json + model.safetensors (models.model_dir)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from models.atomic import atomic_directory
from models.dual_encoder import DualEncoder
from models.errors import ModelLoadError
from models.model_dir import CONFIG, WEIGHTS, fingerprint, resolve
from models.onnx_audio import attach_audio_onnx

log = logging.getLogger(__name__)
__all__ = ["fingerprint", "load_model", "save_model"]


def save_model(model: DualEncoder, directory: str | Path) -> Path:
    """Write atomically: a crash mid-save leaves any earlier checkpoint at `directory` intact."""
    directory = Path(directory)
    with atomic_directory(directory) as tmp:
        (tmp / CONFIG).write_text(json.dumps(model.config.to_dict(), indent=2))
        save_file(_trained_state(model), str(tmp / WEIGHTS))
    return directory


def _trained_state(model: DualEncoder) -> dict[str, torch.Tensor]:
    # Towers whose weights come from their own source (a package, a hub name) are not stored.
    skip = tuple(f"{side}_tower." for side in model.config.frozen_towers)
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items() if not k.startswith(skip)}


def load_model(
    name_or_path: str | Path = "lite",
    device: str | torch.device = "cpu",
    audio_options: dict[str, Any] | None = None,
    text_options: dict[str, Any] | None = None,
) -> DualEncoder:
    """The torch model of a profile or directory (for training, GPUs and towers without a numpy core).

    audio_options / text_options override tower options, e.g. a local PaSST checkpoint or RoBERTa dir.
    Inference elsewhere goes through models.encoder.load_encoder, which avoids torch where it can.
    """
    source = resolve(name_or_path)
    source.config.audio.options.update(audio_options or {})
    source.config.text.options.update(text_options or {})
    model = DualEncoder(source.config)
    if source.directory is not None:
        _load_weights(model, source.directory)
    model.fingerprint = source.fingerprint
    model = model.to(torch.device(device)).eval()
    if model.device.type == "cpu":  # onnxruntime's CPU graph; on a GPU torch is the fast path
        attach_audio_onnx(model)  # an `export-onnx --audio` directory named by $AUDIOSEARCH_ONNX_DIR, if any
    return model


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
