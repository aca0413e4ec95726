"""End-to-end training: audio and text towers (those not frozen) with the projections, from raw audio.

Each training item is a (clip, caption) row. A step decodes its clips (kept in memory up to a budget,
so small sets decode once), takes one random window of `window_seconds` per clip (zero-padded when the
clip is shorter, as at inference), tokenises the captions and runs both towers with gradients. PaSST
applies patchout only in train mode, so the same tower is exact at inference. Frozen towers run in
eval mode without gradients. Validation ranks each distinct caption against the unique clips with the
inference path (best window per clip), as `audiosearch eval` does.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from audiosearch.core.errors import InvalidInputError
from audiosearch.models.audio import load_audio
from audiosearch.models.dual_encoder import DualEncoder
from audiosearch.training.data import CaptionRow
from audiosearch.training.evaluation import caption_clip_similarity
from audiosearch.training.metrics import precision_at_k, retrieval_metrics
from audiosearch.training.trainer import StepCheckpoint, TrainConfig, TrainResult, fit, positive_groups

log = logging.getLogger(__name__)
AUDIO_CACHE_MB = 2048  # decoded clips kept in memory; beyond it, clips are decoded again when drawn

ValSet = tuple[str, Sequence[CaptionRow]]  # (metric prefix, rows)


class ClipAudio:
    """Decoded clips at the model's rate and random fixed-length crops of them."""

    def __init__(self, paths: Sequence[Path], sample_rate: int, window_seconds: float, cache_mb: int) -> None:
        self.paths, self.sr = list(paths), sample_rate
        self.window = int(round(window_seconds * sample_rate))
        self.budget = cache_mb * 2**20
        self.cache: dict[int, np.ndarray] = {}
        self.cached_bytes = 0

    def wave(self, i: int) -> np.ndarray:
        if i in self.cache:
            return self.cache[i]
        wave = load_audio(self.paths[i], self.sr)
        if self.cached_bytes + wave.nbytes <= self.budget:
            self.cache[i] = wave
            self.cached_bytes += wave.nbytes
        return wave

    def batch(self, clips: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, window) waveforms and their real lengths: one random window per clip."""
        out = torch.zeros(len(clips), self.window)
        lengths = torch.zeros(len(clips), dtype=torch.int64)
        for row, i in enumerate(clips.tolist()):
            wave = self.wave(i)
            # drawn for every clip, long or short, so the generator's sequence does not depend on lengths
            start = int(torch.rand(1, generator=gen) * max(1, len(wave) - self.window + 1))
            piece = torch.from_numpy(wave[start : start + self.window])
            out[row, : len(piece)] = piece
            lengths[row] = len(piece)
        return out, lengths


def train_towers(
    model: DualEncoder,
    rows: Sequence[CaptionRow],
    val: Sequence[ValSet] = (),
    config: TrainConfig | None = None,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
    checkpoint: StepCheckpoint | None = None,
    on_step: Callable[[dict[str, float]], None] | None = None,
    cache_mb: int = AUDIO_CACHE_MB,
) -> TrainResult:
    """Train every parameter with requires_grad (towers included) on (clip, caption) rows; returns the
    model in eval mode. Callbacks and checkpoints as in `train_projections`."""
    cfg = config or TrainConfig()
    if not rows:
        raise InvalidInputError("no training rows")
    clips = sorted({r.clip_id: r.path for r in rows}.items())
    texts = sorted({r.caption for r in rows})
    clip_pos = {cid: i for i, (cid, _) in enumerate(clips)}
    text_pos = {t: i for i, t in enumerate(texts)}
    audio_index = torch.tensor([clip_pos[r.clip_id] for r in rows], dtype=torch.int64)
    text_index = torch.tensor([text_pos[r.caption] for r in rows], dtype=torch.int64)
    groups = positive_groups(audio_index, text_index)
    audio = ClipAudio([p for _, p in clips], model.sample_rate, model.config.window_seconds, cache_mb)

    def loss(m: DualEncoder, batch: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        dev = m.device
        waves, lengths = audio.batch(audio_index[batch], gen)
        tok = m.text_tower.tokenize([texts[t] for t in text_index[batch].tolist()])
        a = m.embed_audio(waves.to(dev), lengths.to(dev))
        t = m.embed_tokens(**{k: v.to(dev) for k, v in tok.items()})
        return m.loss(a.float(), t.float(), groups[batch].to(dev))

    def metrics(m: DualEncoder) -> dict[str, float]:
        return {f"{name}/{k}": v for name, data in val for k, v in evaluate_rows_fast(m, data).items()}

    log.info(
        "tower training: %d rows, %d clips, %d captions; trainable: %s",
        len(rows),
        len(clips),
        len(texts),
        ", ".join(trainable_parts(model)),
    )
    # Dropout, patchout and the mel band jitter draw from torch's global RNG: seeding it makes a run
    # reproducible from its config (a resumed run restores the RNG state from its checkpoint instead).
    torch.manual_seed(cfg.seed)
    return fit(model, len(rows), loss, metrics, cfg, on_epoch, checkpoint, on_step)


def evaluate_rows_fast(model: DualEncoder, rows: Sequence[CaptionRow]) -> dict[str, float]:
    """mAP@10, R@k and P@10 of each distinct caption against the unique clips (best window per clip)."""
    sim, relevance = caption_clip_similarity(model, rows)
    return {**retrieval_metrics(sim, relevance), "P@10": precision_at_k(sim, relevance, 10)}


def trainable_parts(model: DualEncoder) -> list[str]:
    """Top-level modules with trainable parameters, e.g. ['audio_tower', 'audio_proj', 'log_temperature']."""
    return sorted({n.split(".", 1)[0] for n, p in model.named_parameters() if p.requires_grad})


def set_frozen(model: DualEncoder, audio: bool, text: bool) -> None:
    """Freeze or unfreeze each tower. A tower that trains is no longer its source's weights, so it leaves
    `config.frozen_towers` for good: checkpoints then store its weights, and cached features of the
    original tower are never reused for it."""
    for side, frozen in (("audio", audio), ("text", text)):
        tower = getattr(model, f"{side}_tower")
        if not frozen and not any(True for _ in tower.parameters()):
            raise InvalidInputError(
                f"the {side} tower ({getattr(model.config, side).kind}) has no trainable weights; freeze it"
            )
        tower.requires_grad_(not frozen)
        if not frozen and side in model.config.frozen_towers:
            model.config.frozen_towers = [s for s in model.config.frozen_towers if s != side]
