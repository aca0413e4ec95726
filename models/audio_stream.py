"""Windows of a long file read block by block: memory stays at a few blocks however long the file is.

Gives the same windows as `cut_windows(load_audio(path, sr), sr, ...)` (same starts, same padding rule)
up to the resampler's block-boundary rounding, so long and short files land in one index consistently.
A `ReadLimit` bounds one read (query by example): at most `max_seconds` from the start are decoded, the
rest of the file never is, and a `check` callback may stop the read between blocks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from audiosearch.core.errors import AudioDecodeError, InvalidInputError
from audiosearch.models.audio import (
    STREAM_OVER_SECONDS,
    WindowCutter,
    Windows,
    check_waveform,
    cut_windows,
    decode_head,
    load_audio,
    probe,
    resample,
    to_mono,
)

# Samples (all channels together) per block read: 16 MB of float32 whatever the rate and channel count, so a
# header claiming 255 channels at 655 kHz costs no more per block than ordinary stereo (30 s at 44.1 kHz: 2.6M).
MAX_BLOCK_SAMPLES = 1 << 22


@dataclass
class ReadLimit:
    """Bounds on one file's read, and what the read found (filled in as its windows are read)."""

    max_seconds: float | None = None  # decode at most this much from the start
    check: Callable[[], None] | None = None  # called before each block; raises to stop the read
    seconds: float = 0.0  # audio read, in seconds
    truncated: bool = False  # the file goes on past max_seconds

    def __post_init__(self) -> None:
        if self.max_seconds is not None and self.max_seconds <= 0:
            raise InvalidInputError(f"max_seconds must be positive, got {self.max_seconds}")


def stream_windows(
    path: str | Path,
    sample_rate: int,
    window_s: float = 10.0,
    hop_s: float | None = None,
    min_tail_s: float = 0.5,
    chunk_windows: int = 32,
    block_s: float = 30.0,
    limit: ReadLimit | None = None,
) -> Iterator[Windows]:
    """Yield `Windows` of at most `chunk_windows` windows each, with start/end seconds from the file start."""
    if window_s <= 0 or (hop_s is not None and hop_s <= 0):
        raise InvalidInputError("window and hop must be positive seconds")
    win, hop = int(round(window_s * sample_rate)), int(round((hop_s or window_s) * sample_rate))
    cutter = WindowCutter(win, hop, int(min_tail_s * sample_rate), sample_rate, chunk_windows)
    for block in _resampled_blocks(Path(path), sample_rate, block_s, limit or ReadLimit()):
        yield from cutter.feed(block)
    yield from cutter.finish()


def _resampled_blocks(path: Path, sample_rate: int, block_s: float, limit: ReadLimit) -> Iterator[np.ndarray]:
    try:
        f = sf.SoundFile(str(path))
    except Exception as err:
        raise AudioDecodeError(f"{path}: cannot decode ({str(err).splitlines()[0][:160]})") from None
    with f:
        stream = None if f.samplerate == sample_rate else soxr.ResampleStream(f.samplerate, sample_rate, 1, "float32")
        frames = max(1, min(int(block_s * f.samplerate), MAX_BLOCK_SAMPLES // max(1, f.channels)))
        cap = None if limit.max_seconds is None else max(1, int(limit.max_seconds * f.samplerate))
        at = 0
        while True:
            if limit.check is not None:
                limit.check()
            want = frames if cap is None else min(frames, cap - at)
            try:
                block = f.read(want, dtype="float32", always_2d=True)
            except Exception as err:  # a truncated or corrupt stretch deep inside the file
                raise AudioDecodeError(f"{path}: decode failed at {at / f.samplerate:.0f} s ({err})") from None
            last = len(block) < want or (cap is not None and at + len(block) >= cap)
            mono = to_mono(block)
            if len(mono):
                check_waveform(mono, where=f"{path} at {at / f.samplerate:.0f} s")
            at += len(block)
            out = mono if stream is None else stream.resample_chunk(mono, last=last)
            if len(out):
                yield np.asarray(out, dtype=np.float32)
            if last:
                break
        limit.seconds = at / f.samplerate
        if cap is not None and at >= cap:
            limit.truncated = _goes_on(f)
    if at == 0:
        raise AudioDecodeError(f"{path}: no samples")


def _goes_on(f: sf.SoundFile) -> bool:
    """Whether a file has audio after the read position (one more frame decodes)."""
    try:
        return len(f.read(1, dtype="float32")) > 0
    except Exception:  # what follows does not decode: still more file than was read
        return True


def file_windows(
    path: str | Path,
    sample_rate: int,
    window_s: float = 10.0,
    hop_s: float | None = None,
    min_tail_s: float = 0.5,
    stream_over_s: float = STREAM_OVER_SECONDS,
    chunk_windows: int = 32,
    limit: ReadLimit | None = None,
) -> Iterator[Windows]:
    """The windows of a file, decoded whole, or block by block when it is longer than `stream_over_s`
    (and a format soundfile reads in blocks). A generator: nothing is decoded until it is iterated.

    With a `limit`, the file is always read block by block (or, for a format soundfile cannot open, only
    its first `limit.max_seconds` are decoded), so no header can make the read longer than the limit."""
    if limit is not None:
        yield from _limited_windows(Path(path), sample_rate, window_s, hop_s, min_tail_s, chunk_windows, limit)
        return
    info = probe(path)
    if info.blockwise and info.duration > stream_over_s:
        yield from stream_windows(path, sample_rate, window_s, hop_s, min_tail_s, chunk_windows=chunk_windows)
    else:
        yield cut_windows(load_audio(path, sample_rate), sample_rate, window_s, hop_s, min_tail_s)


def _limited_windows(
    path: Path,
    sample_rate: int,
    window_s: float,
    hop_s: float | None,
    min_tail_s: float,
    chunk_windows: int,
    limit: ReadLimit,
) -> Iterator[Windows]:
    try:
        sf.info(str(path))
    except Exception as err:
        if _SOUNDFILE_SUFFIXES.get(path.suffix.lower()) in sf.available_formats():
            # a format soundfile reads, so the file is broken: librosa would fail too, after importing ~200 MB
            raise AudioDecodeError(f"{path}: cannot decode ({str(err).splitlines()[0][:160]})") from None
        head = _head(path, sample_rate, limit)  # m4a, ...: the head only
        yield cut_windows(head, sample_rate, window_s, hop_s, min_tail_s)
        return
    yield from stream_windows(path, sample_rate, window_s, hop_s, min_tail_s, chunk_windows=chunk_windows, limit=limit)


_SOUNDFILE_SUFFIXES = {
    ".wav": "WAV",
    ".flac": "FLAC",
    ".ogg": "OGG",
    ".oga": "OGG",
    ".opus": "OGG",
    ".mp3": "MP3",
    ".aiff": "AIFF",
    ".aif": "AIFF",
}


def _head(path: Path, sample_rate: int, limit: ReadLimit) -> np.ndarray:
    if limit.check is not None:
        limit.check()
    if limit.max_seconds is None:
        wave = load_audio(path, sample_rate)
        limit.seconds = len(wave) / sample_rate
        return wave
    # a little more than the limit, to tell a file that ends there from one that goes on
    wave, sr = decode_head(path, limit.max_seconds + 1.0)
    keep = int(limit.max_seconds * sr)
    limit.truncated = len(wave) > keep
    mono = to_mono(wave[:keep])
    check_waveform(mono, where=str(path))
    out = resample(mono, sr, sample_rate)
    if out.size == 0:
        raise AudioDecodeError(f"{path}: too short ({len(mono)} samples at {sr} Hz)")
    limit.seconds = len(mono) / sr
    return out
