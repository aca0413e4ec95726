"""Fusion of the zero-shot label bridge with YAMNet's own audio features, for a learned residual on top.

The `yamnet_fusion` tower outputs, per 10 s window, the concatenation

    [ bridge vector (384, unit) | YAMNet embedding (1024, unit) | class probabilities (521, unit) ]

(`parts` picks which of the last two are present; the bridge always comes first). The `fusion` profile
puts a linear projection on it into MiniLM's 384-d space and an identity text projection, both padded
with zero rows to the shared 1024-d space every profile uses (the padding changes no cosine), so

    audio = normalize(W_b @ bridge + W_r @ [embedding, scores] + b),   query = normalize(MiniLM(text))

With `init_fusion` (W_b = I, W_r = 0, b = 0) the model *is* the zero-shot bridge, and training learns a
residual from the extra features while the text side stays the frozen MiniLM (one text forward per query).
The tower has no trainable weights, so the training code's cached-feature path (training) applies.

Each part is L2-normalised so that their scales, and thus the learning rate's effect, are comparable.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from models.dual_encoder import DualEncoder
from models.encoders.base import AudioTower, register_audio
from models.encoders.bridge import YamnetBridge
from models.encoders.yamnet import EMBED_DIM, N_CLASSES, SAMPLE_RATE
from models.errors import ModelLoadError

PART_DIMS = {"embedding": EMBED_DIM, "scores": N_CLASSES}


class YamnetFusionFeatures(AudioTower):
    """Waveforms (B, T) at 16 kHz -> (B, 384 + extra parts): the bridge vector, then the extra features."""

    sample_rate = SAMPLE_RATE
    crops_padding = True  # as the tagger: patches past `lengths` are skipped

    def __init__(self, parts: Sequence[str] = ("embedding", "scores"), top_k: int = 20, **tagger_options: object):
        super().__init__()
        unknown = set(parts) - set(PART_DIMS)
        if unknown or len(set(parts)) != len(parts):
            raise ModelLoadError(f"yamnet_fusion parts must be distinct names from {sorted(PART_DIMS)}, got {parts}")
        self.parts = tuple(parts)
        self.bridge = YamnetBridge(top_k=top_k, **tagger_options)
        self.bridge_dim = self.bridge.dim
        self.dim = self.bridge_dim + sum(PART_DIMS[p] for p in self.parts)

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        probs, emb = self.bridge.tagger.scores(waveforms, lengths)  # (B, 521), (B, 1024): one YAMNet pass
        extra = {"embedding": emb, "scores": probs}
        feats = [self.bridge.from_probs(probs)] + [F.normalize(extra[p].float(), dim=-1) for p in self.parts]
        return torch.cat(feats, dim=1)


def init_fusion(model: DualEncoder) -> DualEncoder:
    """Make `model` equal the zero-shot bridge: audio projection [I | 0] with zero bias, identity text
    projection, which is then frozen so that queries stay plain MiniLM embeddings."""
    tower, proj, text_proj = model.audio_tower, model.audio_proj, model.text_proj
    if not isinstance(tower, YamnetFusionFeatures) or not isinstance(proj, nn.Linear):
        raise ModelLoadError("init_fusion needs a yamnet_fusion audio tower with a linear projection")
    width = tower.bridge_dim
    if not isinstance(text_proj, nn.Linear) or text_proj.in_features != width or proj.out_features < width:
        raise ModelLoadError(f"init_fusion needs a linear text projection from {width}-d and embed_dim >= {width}")
    with torch.no_grad():
        proj.weight.copy_(bridge_identity(proj, width))
        proj.bias.zero_()
        text_proj.weight.copy_(torch.eye(text_proj.out_features, width))
        text_proj.bias.zero_()
    text_proj.requires_grad_(False)
    return model


def bridge_identity(proj: nn.Linear, width: int) -> torch.Tensor:
    """The projection weight that passes the bridge block through and drops the rest: [[I, 0], [0, 0]].
    Rows past `width` stay zero in training too (the text side is zero there, so their gradient is)."""
    eye = torch.zeros(proj.out_features, proj.in_features)
    eye[:width, :width] = torch.eye(width)
    return eye


def freeze_bridge_block(model: DualEncoder) -> torch.utils.hooks.RemovableHandle:
    """Keep W_b at its value (gradients masked), so training moves the residual and bias only.

    AdamW's decoupled weight decay still shrinks W_b slightly; since the output is normalised, that only
    weighs the residual a little more, like a larger learning rate on it would."""
    tower, weight = model.audio_tower, model.audio_proj.weight
    mask = torch.ones_like(weight)
    mask[:, : tower.bridge_dim] = 0.0
    return weight.register_hook(lambda grad: grad * mask)


@register_audio("yamnet_fusion")
def build_yamnet_fusion(**options: object) -> YamnetFusionFeatures:
    return YamnetFusionFeatures(**options)  # type: ignore[arg-type]
