"""Zero-shot label bridge: audio -> YAMNet's 521 AudioSet classes -> a vector in MiniLM's text space.

A window's class probabilities (max over patches) pick its top-k classes; the output is the
probability-weighted mean of the MiniLM embeddings of "the sound of <class>" over those classes,
L2-normalised (384-d). A MiniLM query embedding is then directly comparable by cosine, with no
training, which is why the "bridge" profile pairs it with a tied, inner-product-preserving
projection. On booth/ this reached mAP@10 0.31 against 0.14-0.15 for aisfx projections trained on
the shared pool (docs/model-card.md); top-k of 5 to 521 scored the same, 3 clearly worse.

The prompt embeddings are precomputed (models/assets/yamnet/class_prompts_minilm.safetensors, made by
scripts/vendor_yamnet.py), so loading the tower loads no text model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from safetensors import safe_open

from audiosearch.core.errors import ModelLoadError
from audiosearch.models.projection import unit_rows
from audiosearch.models.registry import audio_core
from audiosearch.models.towers.cores.yamnet import ASSETS, N_CLASSES, SAMPLE_RATE, YamnetCore

PROMPTS = ASSETS / "class_prompts_minilm.safetensors"


class BridgeCore:
    """Windows (B, T) at 16 kHz -> unit vectors (B, 384) in the MiniLM sentence space."""

    sample_rate = SAMPLE_RATE
    crops_padding = True  # as its tagger: patches past `lengths` are skipped

    def __init__(self, top_k: int = 20, prompts: str | None = None, **tagger_options: object) -> None:
        if not 1 <= top_k <= N_CLASSES:
            raise ModelLoadError(f"yamnet_bridge top_k must be in 1..{N_CLASSES}, got {top_k}")
        self.top_k = top_k
        self.tagger = YamnetCore(**tagger_options)  # type: ignore[arg-type]
        self.prompt_emb, self.prompt_info = load_prompt_embeddings(Path(prompts) if prompts else PROMPTS)
        self.dim = self.prompt_emb.shape[1]

    def __call__(self, waves: np.ndarray, lengths: np.ndarray | None = None) -> np.ndarray:
        probs, _ = self.tagger.scores(waves, lengths)  # (B, 521)
        return self.from_probs(probs)

    def from_probs(self, probs: np.ndarray) -> np.ndarray:
        """Class probabilities (B, 521) -> (B, 384): weighted mean of the top-k prompt embeddings."""
        idx = np.argpartition(-probs, self.top_k - 1, axis=1)[:, : self.top_k]  # (B, k), any order
        top = np.take_along_axis(probs, idx, axis=1).astype(np.float32)
        weights = top / np.maximum(top.sum(axis=1, keepdims=True), 1e-12)
        mixed = np.einsum("bk,bkd->bd", weights, self.prompt_emb[idx])
        return unit_rows(mixed)


def class_match_scores(
    query_emb: np.ndarray, clip_probs: np.ndarray, prompt_emb: np.ndarray, temperature: float = 0.02
) -> np.ndarray:
    """The "class match" variant (quality notes, booth mAP@10 0.33): queries (Q, 384) x clips -> (Q, N).

    Each query becomes a distribution over classes, softmax(cos(query, prompts) / temperature), and is
    scored against per-class z-scored clip probabilities (N, 521). The z-scores use statistics of the
    clips given, i.e. of a whole library, so this is a search-time rule, not a per-clip embedding.
    """
    q = unit_rows(query_emb) @ unit_rows(prompt_emb).T / temperature  # (Q, 521)
    attend = np.exp(q - q.max(axis=1, keepdims=True))
    attend /= attend.sum(axis=1, keepdims=True)
    p = np.asarray(clip_probs, dtype=np.float32)
    z = (p - p.mean(axis=0)) / np.maximum(p.std(axis=0, ddof=1), 1e-6)  # (N, 521)
    return attend @ z.T


def load_prompt_embeddings(path: Path) -> tuple[np.ndarray, dict[str, str]]:
    """(521, D) unit-norm class prompt embeddings and the metadata that says how they were made."""
    if not path.is_file():
        raise ModelLoadError(f"class prompt embeddings not found: {path} (re-create with scripts/vendor_yamnet.py)")
    with safe_open(str(path), framework="numpy") as f:
        emb, info = f.get_tensor("embeddings").astype(np.float32), f.metadata() or {}
    if emb.ndim != 2 or emb.shape[0] != N_CLASSES:
        raise ModelLoadError(f"{path}: expected ({N_CLASSES}, dim) embeddings, got {tuple(emb.shape)}")
    return emb, info


@audio_core("yamnet_bridge")
def build_yamnet_bridge(**options: object) -> BridgeCore:
    return BridgeCore(**options)  # type: ignore[arg-type]
