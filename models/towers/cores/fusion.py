"""Fusion of the zero-shot label bridge with YAMNet's own audio features, for a learned residual on top.

The `yamnet_fusion` tower outputs, per 10 s window, the concatenation

    [ bridge vector (384, unit) | YAMNet embedding (1024, unit) | class probabilities (521, unit) ]

(`parts` picks which of the last two are present; the bridge always comes first). The `fusion` profile
puts a linear projection on it into MiniLM's 384-d space and an identity text projection, so

    audio = normalize(W_b @ bridge + W_r @ [embedding, scores] + b),   query = normalize(MiniLM(text))

With W_b = I, W_r = 0, b = 0 the model *is* the zero-shot bridge (audiosearch.training.fusion_init sets that up), and
training learns a residual from the extra features while the text side stays the frozen MiniLM. The tower
has no trainable weights, so training uses the cached-feature path. Each part is L2-normalised so that
their scales, and thus the learning rate's effect, are comparable.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from audiosearch.core.errors import ModelLoadError
from audiosearch.models.projection import unit_rows
from audiosearch.models.registry import audio_core
from audiosearch.models.towers.cores.bridge import BridgeCore
from audiosearch.models.towers.cores.yamnet import EMBED_DIM, N_CLASSES, SAMPLE_RATE

PART_DIMS = {"embedding": EMBED_DIM, "scores": N_CLASSES}


class FusionCore:
    """Windows (B, T) at 16 kHz -> (B, 384 + extra parts): the bridge vector, then the extra features."""

    sample_rate = SAMPLE_RATE
    crops_padding = True  # as the tagger: patches past `lengths` are skipped

    def __init__(self, parts: Sequence[str] = ("embedding", "scores"), top_k: int = 20, **tagger_options: object):
        unknown = set(parts) - set(PART_DIMS)
        if unknown or len(set(parts)) != len(parts):
            raise ModelLoadError(f"yamnet_fusion parts must be distinct names from {sorted(PART_DIMS)}, got {parts}")
        self.parts = tuple(parts)
        self.bridge = BridgeCore(top_k=top_k, **tagger_options)
        self.bridge_dim = self.bridge.dim
        self.dim = self.bridge_dim + sum(PART_DIMS[p] for p in self.parts)

    def __call__(self, waves: np.ndarray, lengths: np.ndarray | None = None) -> np.ndarray:
        probs, emb = self.bridge.tagger.scores(waves, lengths)  # (B, 521), (B, 1024): one YAMNet pass
        extra = {"embedding": emb, "scores": probs}
        feats = [self.bridge.from_probs(probs)] + [unit_rows(extra[p]) for p in self.parts]
        return np.concatenate(feats, axis=1)


@audio_core("yamnet_fusion")
def build_yamnet_fusion(**options: object) -> FusionCore:
    return FusionCore(**options)  # type: ignore[arg-type]
