"""Zero-shot label bridge: audio -> YAMNet's 521 AudioSet classes -> a vector in MiniLM's text space.

A window's class probabilities (max over patches) pick its top-k classes; the output is the
probability-weighted mean of the MiniLM embeddings of "the sound of <class>" over those classes,
L2-normalised (384-d). A MiniLM query embedding is then directly comparable by cosine, with no
training, which is why the "bridge" profile pairs it with a tied, inner-product-preserving
projection. On booth/ this reached mAP@10 0.31 against 0.14-0.15 for aisfx projections trained on
the shared pool (/work/shared/quality-notes.md); top-k of 5 to 521 scored the same, 3 clearly worse.

The prompt embeddings are precomputed (models/assets/yamnet/class_prompts_minilm.safetensors, made by
scripts/vendor_yamnet.py), so loading the tower loads no text model.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import safe_open

from models.encoders.base import AudioTower, register_audio
from models.encoders.yamnet import ASSETS, N_CLASSES, SAMPLE_RATE, YamnetTagger
from models.errors import ModelLoadError

PROMPTS = ASSETS / "class_prompts_minilm.safetensors"


class YamnetBridge(AudioTower):
    """Waveforms (B, T) at 16 kHz -> unit vectors (B, 384) in the MiniLM sentence space."""

    sample_rate = SAMPLE_RATE
    crops_padding = True  # as its tagger: patches past `lengths` are skipped

    def __init__(self, top_k: int = 20, prompts: str | None = None, **tagger_options: object) -> None:
        super().__init__()
        if not 1 <= top_k <= N_CLASSES:
            raise ModelLoadError(f"yamnet_bridge top_k must be in 1..{N_CLASSES}, got {top_k}")
        self.top_k = top_k
        self.tagger = YamnetTagger(**tagger_options)  # type: ignore[arg-type]
        emb, self.prompt_info = load_prompt_embeddings(Path(prompts) if prompts else PROMPTS)
        self.register_buffer("prompt_emb", emb, persistent=False)  # (521, 384), unit rows
        self.dim = emb.shape[1]

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        probs, _ = self.tagger.scores(waveforms, lengths)  # (B, 521)
        return self.from_probs(probs)

    def from_probs(self, probs: torch.Tensor) -> torch.Tensor:
        """Class probabilities (B, 521) -> (B, 384): weighted mean of the top-k prompt embeddings."""
        top, idx = probs.float().topk(self.top_k, dim=1)  # (B, k)
        weights = top / top.sum(dim=1, keepdim=True).clamp(min=1e-12)
        mixed = torch.einsum("bk,bkd->bd", weights, self.prompt_emb[idx])
        return F.normalize(mixed, dim=-1)


def class_match_scores(
    query_emb: torch.Tensor, clip_probs: torch.Tensor, prompt_emb: torch.Tensor, temperature: float = 0.02
) -> torch.Tensor:
    """The "class match" variant (quality notes, booth mAP@10 0.33): queries (Q, 384) x clips -> (Q, N).

    Each query becomes a distribution over classes, softmax(cos(query, prompts) / temperature), and is
    scored against per-class z-scored clip probabilities (N, 521). The z-scores use statistics of the
    clips given, i.e. of a whole library, so this is a search-time rule, not a per-clip embedding.
    """
    q = F.normalize(query_emb.float(), dim=-1) @ F.normalize(prompt_emb.float(), dim=-1).T  # (Q, 521)
    attend = torch.softmax(q / temperature, dim=1)
    p = clip_probs.float()
    z = (p - p.mean(dim=0)) / p.std(dim=0).clamp(min=1e-6)  # (N, 521)
    return attend @ z.T


def load_prompt_embeddings(path: Path) -> tuple[torch.Tensor, dict[str, str]]:
    """(521, D) unit-norm class prompt embeddings and the metadata that says how they were made."""
    if not path.is_file():
        raise ModelLoadError(f"class prompt embeddings not found: {path} (re-create with scripts/vendor_yamnet.py)")
    with safe_open(str(path), framework="pt") as f:
        emb, info = f.get_tensor("embeddings").float(), f.metadata() or {}
    if emb.ndim != 2 or emb.shape[0] != N_CLASSES:
        raise ModelLoadError(f"{path}: expected ({N_CLASSES}, dim) embeddings, got {tuple(emb.shape)}")
    return emb, info


@register_audio("yamnet_bridge")
def build_yamnet_bridge(**options: object) -> YamnetBridge:
    return YamnetBridge(**options)  # type: ignore[arg-type]
