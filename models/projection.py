"""The projection heads in numpy, read from a model's stored weights (same maths as audiosearch.models.dual_encoder)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from audiosearch.core.errors import ModelLoadError
from audiosearch.models.config import ModelConfig


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (as torch's F.normalize: zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


class Projection:
    """x (B, dim_in) -> unit rows (B, embed_dim): linear, two linears with a ReLU between, or the tied map."""

    def __init__(self, layers: list[tuple[np.ndarray, np.ndarray | None]]) -> None:
        self.layers = layers

    def __call__(self, x: np.ndarray, normalize: bool = True) -> np.ndarray:
        for i, (w, b) in enumerate(self.layers):
            x = x @ w.T + (b if b is not None else 0.0)
            if i < len(self.layers) - 1:
                x = np.maximum(x, 0.0)
        return unit_rows(x) if normalize else np.asarray(x, dtype=np.float32)


def projection_from(config: ModelConfig, side: str, weights: Mapping[str, np.ndarray], dim_in: int) -> Projection:
    """The `side` ('audio' or 'text') projection of a stored model; a missing weight is a ModelLoadError."""
    kind = config.projection
    if kind == "tied":  # one weight for both sides, the padded identity until trained
        w = weights.get("audio_proj.weight")
        return Projection([(np.eye(config.embed_dim, dim_in, dtype=np.float32) if w is None else w, None)])
    names = ["0", "2"] if kind == "mlp" else [""]
    layers = []
    for n in names:
        prefix = ".".join(p for p in (f"{side}_proj", n) if p)
        if f"{prefix}.weight" not in weights:
            raise ModelLoadError(f"model {config.name}: no trained {side} projection ({prefix}.weight) is stored")
        layers.append((weights[f"{prefix}.weight"], weights.get(f"{prefix}.bias")))
    return Projection(layers)
