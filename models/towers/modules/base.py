"""The torch tower interfaces, and towers built from a config's kind through the registry (audiosearch.models.registry).

A kind with a torch module (PaSST, aiSFX, the transformers text towers) is built as that module; a kind that
has only a numpy core (YAMNet, the label bridge, fusion features) is wrapped in `CoreAudioTower`, which has no
parameters: such towers never train, so the torch model and the slim runtime compute the same features.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from audiosearch.core.errors import ModelLoadError
from audiosearch.models.registry import core_builder, module_builder, unknown_kind


class AudioTower(nn.Module):
    """Waveforms (B, T) at `sample_rate` -> features (B, dim).

    `lengths` (B,) gives the real samples in each row (the rest is zero padding), for towers that
    can ignore padding; towers trained on fixed padded input (PaSST) may disregard it.
    """

    sample_rate: int
    dim: int
    # True when trailing zero padding does not change the output, so a batch can be cut to its
    # longest real row (PaSST, trained on padded 10 s input, keeps the full width).
    crops_padding: bool = False

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError


class TextTower(nn.Module):
    """Tokenised text -> features (B, dim). `tokenize` is separate so ONNX export sees tensors only."""

    dim: int

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class CoreAudioTower(AudioTower):
    """A numpy audio core (models.towers) as a frozen torch tower: features come back on the input's device."""

    def __init__(self, core: Any) -> None:
        super().__init__()
        self.core = core
        self.sample_rate, self.dim, self.crops_padding = core.sample_rate, core.dim, core.crops_padding

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        waves = waveforms.detach().float().cpu().numpy()
        lens = None if lengths is None else lengths.detach().cpu().numpy()
        feats = np.ascontiguousarray(self.core(waves, lens), dtype=np.float32)
        return torch.from_numpy(feats).to(waveforms.device)


def build_audio_tower(kind: str, options: dict[str, Any]) -> AudioTower:
    module = module_builder("audio", kind)
    if module is not None:
        return module(**options)
    core = core_builder("audio", kind)
    if core is None:
        raise unknown_kind("audio", kind)
    return CoreAudioTower(core(**options))


def build_text_tower(kind: str, options: dict[str, Any]) -> TextTower:
    module = module_builder("text", kind)
    if module is not None:
        return module(**options)
    if core_builder("text", kind) is not None:  # e.g. hashed_words: a slim text side has no torch form
        raise ModelLoadError(
            f"text tower kind {kind!r} runs only in the slim runtime (models.load_encoder on the CPU); "
            "the torch model cannot build it"
        )
    raise unknown_kind("text", kind)
