"""What the indexer, the service and evaluation use to embed: one interface, the lightest backend that fits.

`load_encoder` returns the slim runtime (audiosearch.models.slim: numpy + onnxruntime, no torch) where the model's
towers allow it and the device is the CPU, else the torch DualEncoder (PaSST, aiSFX, GPUs), whose text side
then runs on an ONNX export when one is given. Both return numpy at this boundary.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from audiosearch.core.errors import ModelLoadError
from audiosearch.models.batching import Waveforms
from audiosearch.models.config import ModelConfig
from audiosearch.models.model_dir import resolve

BACKENDS = ("auto", "slim", "torch")


class Encoder(Protocol):
    config: ModelConfig
    fingerprint: str
    provenance: dict[str, dict[str, str]]  # where each part's weights came from (audiosearch.models.provenance)

    @property
    def sample_rate(self) -> int: ...

    @property
    def dim(self) -> int: ...

    def encode_audio(
        self,
        waveforms: Waveforms,
        sample_rate: int,
        lengths: Sequence[int] | np.ndarray | None = None,
        batch_size: int = 32,
        normalize: bool = True,
    ) -> np.ndarray: ...

    def encode_text(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray: ...


def load_encoder(
    name_or_path: str | Path = "lite",
    device: str = "cpu",
    onnx_dir: str | Path | None = None,
    backend: str = "auto",
    threads: int = 0,
) -> Encoder:
    """A profile name or model directory, ready to encode. `onnx_dir` (the service's ONNX setting: `--onnx`,
    $AUDIOSEARCH_ONNX_DIR) is an `export-onnx` directory for both sides: its text export encodes queries, its
    audio export (if any) audio on the CPU; without a text export the runtime finds or makes its cached one."""
    from audiosearch.models import slim
    from audiosearch.models.onnx.audio import META as AUDIO_META

    if backend not in BACKENDS:
        raise ModelLoadError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    onnx = Path(onnx_dir) if onnx_dir else None
    if onnx is not None and _text_export(onnx) is None and not (onnx / AUDIO_META).is_file():
        raise ModelLoadError(f"{onnx}: not an ONNX export (no export.json nor export_audio.json; see export-onnx)")
    source = resolve(name_or_path)
    if backend != "torch" and device == "cpu" and slim.supports(source.config):
        return slim.SlimEncoder(name_or_path, source, _text_export(onnx), threads)
    if backend == "slim":
        raise ModelLoadError(f"model {source.config.name} cannot run without torch (or on {device})")
    if importlib.util.find_spec("torch") is None:  # the slim install: say what to install, not a traceback
        raise ModelLoadError(
            f"model {source.config.name} on {device} needs torch, which this install lacks (the slim runtime runs "
            "only the YAMNet models, on the CPU): pip install 'audiosearch[full]', or the Docker image's `full` target"
        )
    from audiosearch.models.checkpoint import load_model

    model = load_model(name_or_path, device=device, onnx_dir=onnx)
    text_export = _text_export(onnx)
    if text_export is not None and device == "cpu":
        from audiosearch.models.onnx.text import OnnxTextSide

        model.text_onnx = OnnxTextSide(text_export, model.fingerprint, threads)
    return model


def _text_export(directory: Path | None) -> Path | None:
    """The folder, if it holds a text export (it may hold the audio export alone)."""
    from audiosearch.models.onnx.text import META

    return directory if directory is not None and (directory / META).is_file() else None
