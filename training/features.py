"""Frozen-tower features, computed once and cached, so that training touches only the projections.

With both towers frozen, a training step needs just `audio_proj(features)` and `text_proj(features)`:
the towers' outputs are fixed, so computing them once turns minutes per epoch into milliseconds.
Audio goes through the same path as inference (decode at the tower's rate, fixed 10 s windows,
zero-padded with `lengths`), so cached features equal what `encode_audio` would feed the projection.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from audiosearch.core.atomic import atomic_write
from audiosearch.core.errors import InvalidInputError
from audiosearch.models.audio_stream import file_windows
from audiosearch.models.dual_encoder import DualEncoder
from audiosearch.models.embedder import Embedder
from audiosearch.training.data import DatasetError

log = logging.getLogger(__name__)


@dataclass
class AudioFeatures:
    """Tower features of many clips, one row per window; clip i owns rows offsets[i]:offsets[i+1]."""

    windows: torch.Tensor  # (W, tower_dim) float32
    offsets: torch.Tensor  # (N + 1,) int64

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def owner(self) -> torch.Tensor:
        """(W,) clip index of each window row."""
        return torch.repeat_interleave(torch.arange(len(self)), self.offsets.diff())


def require_frozen(model: DualEncoder) -> None:
    """Cached features are only valid while the towers cannot change."""
    frozen = set(model.config.frozen_towers)
    trainable = [
        n for n, p in model.named_parameters() if p.requires_grad and n.startswith(("audio_tower.", "text_tower."))
    ]
    if {"audio", "text"} - frozen or trainable:
        raise InvalidInputError(
            "feature caching needs frozen audio and text towers (config.frozen_towers = ['audio', 'text']); "
            f"this model has frozen_towers={sorted(frozen)} and {len(trainable)} trainable tower parameters"
        )


def audio_tower_key(model: DualEncoder) -> str:
    """What determines a clip's cached features: the tower's config and the windowing."""
    cfg = model.config
    spec = {
        "audio": cfg.audio.kind,
        "options": cfg.audio.options,
        "sr": model.sample_rate,
        "window": cfg.window_seconds,
        "hop": cfg.hop_seconds,
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:16]


def compute_audio_features(
    model: DualEncoder,
    paths: Sequence[str | Path],
    cache_dir: str | Path | None = None,
    batch_windows: int = 16,
) -> AudioFeatures:
    """Audio tower features for each file (in order). With `cache_dir`, each file's features are stored
    once under a key of tower config, path, size and mtime, and reused by later calls."""
    require_frozen(model)
    cache = Path(cache_dir) / audio_tower_key(model) if cache_dir is not None else None
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
    per_clip: list[np.ndarray | None] = [_cached(cache, p) for p in paths]
    todo = [i for i, f in enumerate(per_clip) if f is None]
    if todo:
        log.info("audio features: %d of %d clips to compute (%d cached)", len(todo), len(paths), len(paths) - len(todo))
        started = time.perf_counter()
        for i, feats in zip(todo, _embed_files(model, [paths[i] for i in todo], batch_windows), strict=True):
            per_clip[i] = feats
            _store(cache, paths[i], feats)
        log.info("audio features: %d clips in %.1f s", len(todo), time.perf_counter() - started)
    arrays = [f for f in per_clip if f is not None]
    counts = torch.tensor([len(f) for f in arrays], dtype=torch.int64)
    offsets = torch.cat([torch.zeros(1, dtype=torch.int64), counts.cumsum(0)])
    return AudioFeatures(torch.from_numpy(np.concatenate(arrays)).float(), offsets)


def _embed_files(model: DualEncoder, paths: Sequence[str | Path], batch_windows: int) -> Iterator[np.ndarray]:
    """Yield each file's (windows, tower_dim) features in order, through the one embedding pipeline with the
    tower (before the projection) as its encoder: windows of several files share a batch, long files stream."""

    def tower(waves: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            x, n = torch.from_numpy(waves).to(model.device), torch.from_numpy(lengths).to(model.device)
            return model.audio_tower(x, n).float().cpu().numpy()  # (W, tower_dim)

    cfg = model.config
    items = ((p, file_windows(p, model.sample_rate, cfg.window_seconds, cfg.hop_seconds)) for p in paths)
    for e in Embedder(tower, batch_windows).embed(items):
        if e.vectors is None:
            raise DatasetError(f"{e.key}: {e.error}")
        yield e.vectors


def _cache_file(cache: Path, path: str | Path) -> Path:
    p = Path(path).resolve()
    st = p.stat()
    key = f"{p}|{st.st_size}|{st.st_mtime_ns}"
    return cache / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.npy"


def _cached(cache: Path | None, path: str | Path) -> np.ndarray | None:
    if cache is None:
        return None
    f = _cache_file(cache, path)
    try:
        return np.load(f) if f.is_file() else None
    except (OSError, ValueError):  # a torn or foreign file: recompute rather than fail
        log.warning("ignoring unreadable feature cache %s", f)
        return None


def _store(cache: Path | None, path: str | Path, feats: np.ndarray) -> None:
    if cache is None:
        return
    target = _cache_file(cache, path)
    atomic_write(target, lambda f: np.save(f, feats), durable=False)  # a cache: recomputed if lost


def compute_text_features(model: DualEncoder, texts: Sequence[str], batch_size: int = 64) -> torch.Tensor:
    """(len(texts), text_tower_dim) text tower features, before the projection."""
    require_frozen(model)
    out = []
    with torch.inference_mode():
        for s in range(0, len(texts), batch_size):
            tok = model.text_tower.tokenize(list(texts[s : s + batch_size]))
            tok = {k: v.to(model.device) for k, v in tok.items()}
            out.append(model.text_tower(**tok).float().cpu())
    return torch.cat(out)


def project_audio(model: DualEncoder, feats: AudioFeatures) -> torch.Tensor:
    """(N, embed_dim) clip embeddings: unit window embeddings averaged per clip, then re-normalised
    (the reference recipe's averaging of 10 s segments)."""
    dev = model.device
    win = F.normalize(model.audio_proj(feats.windows.to(dev)), dim=-1)  # (W, E)
    summed = torch.zeros(len(feats), win.shape[1], device=dev, dtype=win.dtype)
    summed = summed.index_add(0, feats.owner.to(dev), win)  # (N, E)
    return F.normalize(summed, dim=-1)


def project_text(model: DualEncoder, feats: torch.Tensor) -> torch.Tensor:
    return F.normalize(model.text_proj(feats.to(model.device)), dim=-1)  # (N, E)
