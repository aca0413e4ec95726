"""Waveform peaks: a file's loudness outline, a fixed number of values per file, for drawing its waveform.

A file's duration is cut into `PEAK_BINS` equal bins (fewer when it has fewer samples); each value is the
largest absolute sample of the mono mix in its bin, in [0, 1] (full scale), stored as float16 (800 bytes per
file). The indexer computes them from the audio it decodes anyway (decode workers) and the snapshot stores
them (meta.sqlite `peaks`); unchanged files take theirs from the previous snapshot. Files without stored
peaks (indexed before peaks existed, or embedded by an interrupted run) are computed from the file on first
request by the service, up to ON_DEMAND_MAX_SECONDS, and kept in memory.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import soundfile as sf

from audiosearch.models.audio import decode_head, to_mono

PEAK_BINS = 400
ON_DEMAND_MAX_SECONDS = 1800.0  # longer files without stored peaks get none (a request never reads hours)
BLOCK_FRAMES = 1 << 16


def block_peaks(blocks: Iterable[np.ndarray], frames: int, bins: int = PEAK_BINS) -> np.ndarray:
    """Peaks of `frames` mono samples given as consecutive blocks (memory: one block)."""
    bins = max(1, min(bins, frames))
    out = np.zeros(bins, np.float32)
    at = 0
    for block in blocks:
        block = np.abs(np.asarray(block, np.float32))[: max(0, frames - at)]
        if block.size == 0:
            continue
        idx = (np.arange(at, at + block.size, dtype=np.int64) * bins) // frames
        cuts = np.concatenate(([0], np.flatnonzero(np.diff(idx)) + 1))
        np.fmax.at(out, idx[cuts], np.fmax.reduceat(block, cuts))  # fmax: a NaN sample is no peak
        at += block.size
    return np.clip(np.nan_to_num(out, nan=0.0, posinf=1.0), 0.0, 1.0)


def wave_peaks(wave: np.ndarray, bins: int = PEAK_BINS) -> bytes:
    """Peaks of a decoded mono waveform, encoded for the snapshot."""
    return encode(block_peaks([wave], len(wave), bins)) if len(wave) else b""


def file_peaks(path: str | Path, max_seconds: float | None = None, bins: int = PEAK_BINS) -> bytes | None:
    """Peaks of an audio file read block by block (soundfile), or decoded whole for formats only librosa reads;
    None when it is longer than `max_seconds` or cannot be read."""
    try:
        with sf.SoundFile(str(path)) as f:
            if f.frames <= 0 or (max_seconds is not None and f.frames > max_seconds * f.samplerate):
                return None
            blocks = (to_mono(b) for b in f.blocks(BLOCK_FRAMES, dtype="float32", always_2d=True))
            return encode(block_peaks(blocks, int(f.frames), bins))
    except (sf.LibsndfileError, RuntimeError, TypeError):
        pass
    try:
        limit = max_seconds if max_seconds is not None else 24 * 3600.0
        wave, rate = decode_head(path, limit + 1.0)
    except Exception:  # noqa: BLE001 - undecodable: no waveform, never a failed request
        return None
    mono = to_mono(wave)
    if len(mono) == 0 or len(mono) > limit * rate:
        return None
    return encode(block_peaks([mono], len(mono), bins))


def encode(peaks: np.ndarray) -> bytes:
    return np.asarray(peaks, "<f2").tobytes()


def decode(blob: bytes) -> list[float]:
    """The stored peaks as floats in [0, 1], rounded to 4 decimals (what the API returns)."""
    return [round(float(v), 4) for v in np.frombuffer(blob, "<f2")]
