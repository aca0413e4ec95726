"""Windows of a long file read block by block: memory stays at a few blocks however long the file is.

Gives the same windows as `cut_windows(load_audio(path, sr), sr, ...)` (same starts, same padding rule)
up to the resampler's block-boundary rounding, so long and short files land in one index consistently.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from models.audio import (
    STREAM_OVER_SECONDS,
    WindowCutter,
    Windows,
    check_waveform,
    cut_windows,
    load_audio,
    probe,
    to_mono,
)
from models.errors import AudioDecodeError, InvalidInputError


def stream_windows(
    path: str | Path,
    sample_rate: int,
    window_s: float = 10.0,
    hop_s: float | None = None,
    min_tail_s: float = 0.5,
    chunk_windows: int = 32,
    block_s: float = 30.0,
) -> Iterator[Windows]:
    """Yield `Windows` of at most `chunk_windows` windows each, with start/end seconds from the file start."""
    if window_s <= 0 or (hop_s is not None and hop_s <= 0):
        raise InvalidInputError("window and hop must be positive seconds")
    win, hop = int(round(window_s * sample_rate)), int(round((hop_s or window_s) * sample_rate))
    cutter = WindowCutter(win, hop, int(min_tail_s * sample_rate), sample_rate, chunk_windows)
    for block in _resampled_blocks(Path(path), sample_rate, block_s):
        yield from cutter.feed(block)
    yield from cutter.finish()


def _resampled_blocks(path: Path, sample_rate: int, block_s: float) -> Iterator[np.ndarray]:
    try:
        f = sf.SoundFile(str(path))
    except Exception as err:
        raise AudioDecodeError(f"{path}: cannot decode ({str(err).splitlines()[0][:160]})") from None
    with f:
        stream = None if f.samplerate == sample_rate else soxr.ResampleStream(f.samplerate, sample_rate, 1, "float32")
        frames, at = max(1, int(block_s * f.samplerate)), 0
        while True:
            try:
                block = f.read(frames, dtype="float32", always_2d=True)
            except Exception as err:  # a truncated or corrupt stretch deep inside the file
                raise AudioDecodeError(f"{path}: decode failed at {at / f.samplerate:.0f} s ({err})") from None
            last = len(block) < frames
            mono = to_mono(block)
            if len(mono):
                check_waveform(mono, where=f"{path} at {at / f.samplerate:.0f} s")
            at += len(block)
            out = mono if stream is None else stream.resample_chunk(mono, last=last)
            if len(out):
                yield np.asarray(out, dtype=np.float32)
            if last:
                break
    if at == 0:
        raise AudioDecodeError(f"{path}: no samples")


def file_windows(
    path: str | Path,
    sample_rate: int,
    window_s: float = 10.0,
    hop_s: float | None = None,
    min_tail_s: float = 0.5,
    stream_over_s: float = STREAM_OVER_SECONDS,
    chunk_windows: int = 32,
) -> Iterator[Windows]:
    """The windows of a file, decoded whole, or block by block when it is longer than `stream_over_s`
    (and a format soundfile reads in blocks). A generator: nothing is decoded until it is iterated."""
    info = probe(path)
    if info.blockwise and info.duration > stream_over_s:
        yield from stream_windows(path, sample_rate, window_s, hop_s, min_tail_s, chunk_windows=chunk_windows)
    else:
        yield cut_windows(load_audio(path, sample_rate), sample_rate, window_s, hop_s, min_tail_s)
