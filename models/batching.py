"""Turning what callers hand the encoders into model batches (numpy only, shared by every backend)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from audiosearch.core.errors import InvalidInputError
from audiosearch.models.audio import resample

MAX_AUDIO_SECONDS = 600.0  # one row of encode_audio; longer audio goes through cut_windows first

Waveforms = np.ndarray | Sequence[np.ndarray]


def chunks(n: int, size: int) -> Iterator[slice]:
    for i in range(0, n, max(1, size)):
        yield slice(i, min(n, i + size))


def audio_batch(
    waveforms: Waveforms, sample_rate: int, lengths: Sequence[int] | np.ndarray | None, target_rate: int
) -> tuple[np.ndarray, np.ndarray]:
    """Validate, stack and resample to (B, T) float32 at `target_rate` plus the real lengths (B,).

    Ragged lists are zero-padded. A (B, T) float32 array at the target rate is used as it is: the
    indexer's batches are ~100 MB, and a copy of them costs a GPU-sized forward's worth of time."""
    if not isinstance(sample_rate, int | np.integer) or sample_rate <= 0:
        raise InvalidInputError(f"sample_rate must be a positive integer, got {sample_rate!r}")
    batch, lens = _stack(waveforms, lengths)
    _check_rows(batch, lens, sample_rate)
    if sample_rate != target_rate:
        batch, lens = _resample_batch(batch, lens, sample_rate, target_rate)
    return batch, lens


def model_batches(
    waveforms: Waveforms,
    sample_rate: int,
    lengths: Sequence[int] | np.ndarray | None,
    target_rate: int,
    batch_size: int,
    crops_padding: bool,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(waves, lengths) model batches of at most `batch_size` rows; a tower that ignores trailing padding gets
    each batch cut to its longest real row."""
    batch, lens = audio_batch(waveforms, sample_rate, lengths, target_rate)
    for rows in chunks(len(batch), batch_size):
        width = int(lens[rows].max()) if crops_padding else batch.shape[1]
        yield batch[rows, :width], lens[rows]


def _stack(waveforms: Waveforms, lengths: object) -> tuple[np.ndarray, np.ndarray]:
    if hasattr(waveforms, "detach"):  # a torch tensor, from training code or a notebook
        waveforms = waveforms.detach().cpu().numpy()  # type: ignore[union-attr]
    if isinstance(waveforms, np.ndarray):
        if waveforms.ndim == 1:
            raise InvalidInputError("waveforms must be (batch, samples); wrap a single clip as wave[None]")
        if waveforms.ndim != 2:
            raise InvalidInputError(f"waveforms must be (batch, samples), got shape {waveforms.shape}")
        batch = np.ascontiguousarray(waveforms, dtype=np.float32)
        lens = np.full(len(batch), batch.shape[1], dtype=np.int64)
    else:
        rows = [np.asarray(w, dtype=np.float32) for w in waveforms]
        if any(r.ndim != 1 for r in rows):
            raise InvalidInputError("each waveform must be 1-D (mono samples)")
        batch = np.zeros((len(rows), max((len(r) for r in rows), default=1) or 1), dtype=np.float32)
        for i, r in enumerate(rows):
            batch[i, : len(r)] = r
        lens = np.array([len(r) for r in rows], dtype=np.int64)
    if len(batch) == 0:
        raise InvalidInputError("no waveforms given")
    if lengths is not None:
        lens = np.minimum(np.asarray(lengths, dtype=np.int64), lens)
    return batch, lens


def _check_rows(batch: np.ndarray, lens: np.ndarray, sample_rate: int) -> None:
    for i, n in enumerate(lens):
        if n <= 0:
            raise InvalidInputError(f"waveform {i} is empty")
        if n / sample_rate > MAX_AUDIO_SECONDS:
            raise InvalidInputError(
                f"waveform {i} is {n / sample_rate:.0f} s long; cut it into windows (models.cut_windows) first"
            )
    for i, ok in enumerate(np.isfinite(batch).all(axis=1)):
        if not ok:
            raise InvalidInputError(f"waveform {i} contains NaN or infinite samples")


def _resample_batch(batch: np.ndarray, lens: np.ndarray, sr: int, target: int) -> tuple[np.ndarray, np.ndarray]:
    rows = [resample(batch[i, : lens[i]], sr, target) for i in range(len(batch))]
    new_lens = np.array([len(r) for r in rows], dtype=np.int64)
    width = int(round(batch.shape[1] * target / sr))
    out = np.zeros((len(rows), max(width, int(new_lens.max()))), dtype=np.float32)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out, new_lens
