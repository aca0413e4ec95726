"""The two tower interfaces and the registry that maps a config's `kind` to a builder."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from models.errors import ModelLoadError


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


AudioBuilder = Callable[..., AudioTower]
TextBuilder = Callable[..., TextTower]
AUDIO_TOWERS: dict[str, AudioBuilder] = {}
TEXT_TOWERS: dict[str, TextBuilder] = {}


def register_audio(kind: str) -> Callable[[AudioBuilder], AudioBuilder]:
    def deco(fn: AudioBuilder) -> AudioBuilder:
        AUDIO_TOWERS[kind] = fn
        return fn

    return deco


def register_text(kind: str) -> Callable[[TextBuilder], TextBuilder]:
    def deco(fn: TextBuilder) -> TextBuilder:
        TEXT_TOWERS[kind] = fn
        return fn

    return deco


def build_tower(registry: dict[str, Callable[..., Any]], kind: str, options: dict[str, Any]) -> Any:
    _import_builtin_towers()
    if kind not in registry:
        raise ModelLoadError(f"unknown tower kind {kind!r}; known: {', '.join(sorted(registry))}")
    return registry[kind](**options)


def _import_builtin_towers() -> None:
    # Imported lazily so that `import models` stays cheap and PaSST is only touched when asked for.
    from models.encoders import aisfx, bridge, fusion, hf_text, passt, yamnet  # noqa: F401
