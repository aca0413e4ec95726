"""Chance-level baseline towers: nothing learned, deterministic, numpy only, loaded in milliseconds.

- `logmel_projection` (audio): the mean log-mel spectrum of a window (frames of real audio only), its mean
  over bands removed (the level), through a fixed random projection seeded by `seed`. Different sounds give
  clearly different vectors (a 440 Hz tone against white noise: cosine -0.34), the same sound the same
  vector in every process, and trailing zero padding changes nothing.
- `hashed_words` (text): a signed bag of words hashed into `dim` buckets with BLAKE2b (the same in every
  process, unlike Python's salted `hash`).

Both run on the base install (numpy, scipy): librosa's mel filters and scikit-learn's HashingVectorizer,
which would do the two small hand-written parts here, belong to the `full` extra only.

The two sides share no space, so text-to-audio scores are at chance: a floor for benchmarks (a model that
does not beat it has learned nothing), and a model that indexes and answers queries by example in seconds
(tests of the store, search, cache and API). `save_baseline` writes such a model directory; it loads through
`models.load_encoder(DIR)` as a SlimEncoder. The torch DualEncoder builds the audio side (as a frozen
core) but not the text side.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import scipy.fft
from numpy.lib.stride_tricks import sliding_window_view

from audiosearch.core.atomic import atomic_directory
from audiosearch.core.errors import InvalidInputError, ModelLoadError
from audiosearch.models.config import ModelConfig, TowerConfig
from audiosearch.models.model_dir import CONFIG, WEIGHTS
from audiosearch.models.projection import projection_from, unit_rows
from audiosearch.models.registry import audio_core, text_core

DIM = 128
WORD = re.compile(r"\w+")  # letters and digits of any script; punctuation and emoji are not words
LOG_FLOOR = 1e-6  # added to mel power before the log: silence gives a flat spectrum, i.e. a zero vector


class LogMelProjectionCore:
    """Windows (B, T) at `sample_rate` -> (B, dim) unit vectors (zero for silence)."""

    crops_padding = True  # only frames inside each row's `lengths` are pooled

    def __init__(
        self,
        sample_rate: int = 16000,
        dim: int = DIM,
        n_mels: int = 64,
        n_fft: int = 1024,
        hop: int = 512,
        seed: int = 0,
    ) -> None:
        if min(sample_rate, dim, n_mels, n_fft, hop) <= 0:
            raise ModelLoadError("logmel_projection sample_rate, dim, n_mels, n_fft and hop must be positive")
        self.sample_rate, self.dim, self.n_fft, self.hop = sample_rate, dim, n_fft, hop
        self.mel = mel_filters(sample_rate, n_fft, n_mels)
        self.window = np.hanning(n_fft + 1)[:-1].astype(np.float32)  # periodic Hann
        rng = np.random.default_rng(seed)
        self.projection = (rng.standard_normal((n_mels, dim)) / np.sqrt(dim)).astype(np.float32)

    def __call__(self, waves: np.ndarray, lengths: np.ndarray | None = None) -> np.ndarray:
        waves = np.asarray(waves, dtype=np.float32)
        if waves.ndim != 2:
            raise InvalidInputError(f"waveforms must be (batch, samples), got shape {waves.shape}")
        width = waves.shape[1]
        x = np.pad(waves, ((0, 0), (0, max(0, self.n_fft - width))))
        frames = sliding_window_view(x, self.n_fft, axis=1)[:, :: self.hop] * self.window  # (B, F, n_fft)
        power = np.abs(scipy.fft.rfft(frames, axis=-1)) ** 2
        log_mel = np.log(power @ self.mel + LOG_FLOOR)  # (B, F, n_mels)
        real = np.full(len(x), width) if lengths is None else np.minimum(np.asarray(lengths), width)
        n_valid = np.maximum(1, 1 + (real - self.n_fft) // self.hop)  # frames made of real audio, at least one
        valid = (np.arange(log_mel.shape[1])[None, :] < n_valid[:, None]).astype(np.float32)  # (B, F)
        mean = np.einsum("bf,bfm->bm", valid, log_mel) / valid.sum(axis=1, keepdims=True)
        return unit_rows((mean - mean.mean(axis=1, keepdims=True)) @ self.projection)


class HashedWordsText:
    """Texts -> (B, embed_dim) unit vectors: hashed words, then the model's text projection."""

    def __init__(self, config: ModelConfig, weights: dict[str, np.ndarray], dim: int = DIM) -> None:
        if dim <= 0:
            raise ModelLoadError(f"hashed_words dim must be positive, got {dim}")
        if config.projection == "tied" and dim != config.embed_dim:
            raise ModelLoadError(f"hashed_words dim {dim} must equal embed_dim {config.embed_dim} when tied")
        self.dim = dim
        self.projection = projection_from(config, "text", weights, dim)

    def encode(self, texts: list[str]) -> np.ndarray:
        counts = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in WORD.findall(text.lower()):
                h = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")
                counts[row, (h >> 1) % self.dim] += 1.0 if h & 1 else -1.0  # a sign bit: collisions cancel out
        return self.projection(counts)


def mel_filters(sample_rate: int, n_fft: int, n_mels: int) -> np.ndarray:
    """(n_fft // 2 + 1, n_mels) triangles evenly spaced on the HTK mel scale from 0 Hz to Nyquist, each of unit
    area, so that white noise is flat across bands (librosa.filters.mel with htk=True, norm="slaney")."""

    def mel(hz: np.ndarray) -> np.ndarray:
        return 2595.0 * np.log10(1.0 + hz / 700.0)

    edges = 700.0 * (10.0 ** (np.linspace(0.0, mel(np.array(sample_rate / 2)), n_mels + 2) / 2595.0) - 1.0)
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)[:, None]
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
    rising, falling = (freqs - lower) / (centre - lower), (upper - freqs) / (upper - centre)
    return (np.maximum(0.0, np.minimum(rising, falling)) * (2.0 / (upper - lower))).astype(np.float32)


@audio_core("logmel_projection")
def build_logmel_projection(**options: Any) -> LogMelProjectionCore:
    return LogMelProjectionCore(**options)


@text_core("hashed_words")
def build_hashed_words(ctx: Any, **options: Any) -> HashedWordsText:
    """ctx: audiosearch.models.slim.TextContext (the model's config and stored weights)."""
    return HashedWordsText(ctx.config, ctx.weights, **options)


def baseline_config(
    name: str = "baseline", dim: int = DIM, sample_rate: int = 16000, window_seconds: float = 10.0, seed: int = 0
) -> ModelConfig:
    """Both baseline towers at `dim` under the tied projection (the identity: nothing to store)."""
    return ModelConfig(
        name=name,
        audio=TowerConfig("logmel_projection", {"sample_rate": sample_rate, "dim": dim, "seed": seed}),
        text=TowerConfig("hashed_words", {"dim": dim}),
        embed_dim=dim,
        projection="tied",
        window_seconds=window_seconds,
        hop_seconds=window_seconds,
        frozen_towers=["audio", "text"],
    )


def save_baseline(directory: str | Path, config: ModelConfig | None = None) -> Path:
    """A model directory (config.json + an empty model.safetensors: no weights are trained) for `config`."""
    from safetensors.numpy import save_file

    config = config or baseline_config()
    config.validate()
    directory = Path(directory)
    with atomic_directory(directory) as tmp:
        (tmp / CONFIG).write_text(json.dumps(config.to_dict(), indent=2))
        save_file({}, str(tmp / WEIGHTS))
    return directory
