"""Symmetric NT-Xent (InfoNCE) over in-batch audio/text pairs; takes embeddings only, no model."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def nt_xent(
    audio: torch.Tensor,
    text: torch.Tensor,
    log_temperature: torch.Tensor,
    audio_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean of the audio->text and text->audio cross-entropies over sim / temperature.

    audio, text: (B, D), L2-normalised, row i of each forms a pair. Similarities are divided by
    tau = exp(log_temperature), so a small tau sharpens the softmax (scale = 1 / tau).
    audio_ids: (B,) optional; rows sharing an id are the same clip, and every caption of that clip
    counts as a positive (the reference code's rule), spreading the target mass evenly over them.
    """
    logits = audio @ text.T / log_temperature.exp()  # (B, B)
    if audio_ids is None:
        target = torch.arange(len(audio), device=audio.device)
        return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
    pos = (audio_ids[:, None] == audio_ids[None, :]).float()  # (B, B)
    target = pos / pos.sum(dim=1, keepdim=True)
    a2t = -(target * F.log_softmax(logits, dim=1)).sum(dim=1).mean()
    t2a = -(target * F.log_softmax(logits.T, dim=1)).sum(dim=1).mean()
    return 0.5 * (a2t + t2a)
