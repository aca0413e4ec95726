"""Save and load the torch DualEncoder as a directory: config.json + model.safetensors (models.model_dir)."""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from audiosearch.core.atomic import atomic_directory
from audiosearch.core.errors import ModelLoadError
from audiosearch.models import provenance
from audiosearch.models.config import ModelConfig
from audiosearch.models.dual_encoder import DualEncoder
from audiosearch.models.model_dir import CONFIG, WEIGHTS, ModelSource, fingerprint, resolve
from audiosearch.models.onnx.audio import attach_audio_onnx

log = logging.getLogger(__name__)
__all__ = ["fingerprint", "load_model", "save_model"]


def save_model(model: DualEncoder, directory: str | Path) -> Path:
    """Write atomically: a crash mid-save leaves any earlier checkpoint at `directory` intact. Beside the
    weights: where each part's weights came from (audiosearch.models.provenance) and a tokenizer the model carries."""
    directory = Path(directory)
    with atomic_directory(directory) as tmp:
        (tmp / CONFIG).write_text(json.dumps(model.config.to_dict(), indent=2))
        save_file(_trained_state(model), str(tmp / WEIGHTS))
        provenance.write(tmp, model.provenance)
        if model.bundled_tokenizer:
            model.text_tower.tokenizer.save_pretrained(str(tmp / model.bundled_tokenizer))
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
    onnx_dir: str | Path | None = None,
) -> DualEncoder:
    """The torch model of a profile or directory (for training, GPUs and towers without a numpy core).

    audio_options / text_options override tower options, e.g. a local PaSST checkpoint or RoBERTa dir.
    onnx_dir: an `export-onnx --audio` directory whose audio graph encodes audio on the CPU.
    Inference elsewhere goes through audiosearch.models.encoder.load_encoder, which avoids torch where it can.
    """
    source = resolve(name_or_path)
    source.config.audio.options.update(audio_options or {})
    source.config.text.options.update(text_options or {})
    model = DualEncoder(_build_config(source))
    model.config = source.config  # as stored: paths relative to the directory, the towers' own sources
    if source.directory is not None:
        _load_weights(model, source.directory)
        model.bundled_tokenizer = _bundled_tokenizer(source)
    model.fingerprint = source.fingerprint
    model.provenance = provenance.of_source(source)
    model = model.to(torch.device(device)).eval()
    if model.device.type == "cpu":  # onnxruntime's CPU graph; on a GPU torch is the fast path
        attach_audio_onnx(model, onnx_dir)
    return model


def _build_config(source: ModelSource) -> ModelConfig:
    """The config the towers are built from. In a directory, a tower whose weights are stored skips its own
    weight source (a PaSST checkpoint, hear21passt's AudioSet download): the stored weights replace them."""
    config = copy.deepcopy(source.config)
    if source.directory is None:
        return config
    bundled = _bundled_tokenizer(source)
    if bundled:
        config.text.options["tokenizer"] = str(source.directory / bundled)
    for side in ("audio", "text"):
        options = getattr(config, side).options
        if side not in config.frozen_towers:
            options.update({k: v for k, v in (("checkpoint", None), ("pretrained", False)) if k in options})
    return config


def _bundled_tokenizer(source: ModelSource) -> str | None:
    """A text tokenizer stored in the model directory (a relative `tokenizer` option naming a folder in it)."""
    name = source.config.text.options.get("tokenizer")
    if source.directory is None or not isinstance(name, str) or Path(name).is_absolute():
        return None
    return name if (source.directory / name).is_dir() else None


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
