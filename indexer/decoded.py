"""What a decode job is and what it hands back: the types decode workers, the hand-off and the embedder share."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from audiosearch.models.audio import STREAM_OVER_SECONDS


@dataclass
class DecodeJob:
    path: str  # relative to the library root
    full: str
    size: int
    mtime_ns: int
    sha1: str | None  # known from the previous snapshot when size and mtime are unchanged


@dataclass
class Decoded:
    job: DecodeJob
    sha1: str = ""
    cached: bool = False  # content already embedded: no decode was done
    waves: np.ndarray | None = None
    starts: np.ndarray | None = None
    ends: np.ndarray | None = None
    lengths: np.ndarray | None = None
    duration: float = 0.0
    sample_rate: int = 0
    channels: int = 0
    error: str | None = None
    copy_of: str | None = None  # the same content came earlier in this run under this path: embedded once, there
    decode_failed: bool = False  # the content itself cannot be decoded: remembered (audiosearch.indexer.failures)
    stream: bool = False  # too long to decode whole: the embedder reads it in blocks (audiosearch.models.audio_stream)
    handoff: str | None = None  # waves sent as this file (audiosearch.indexer.handoff), to be read back by the parent
    shape: tuple[int, ...] = ()
    peaks: bytes | None = None  # the waveform outline (audiosearch.indexer.peaks), from the decode


@dataclass(frozen=True)
class DecodeSettings:
    sample_rate: int
    window_s: float
    hop_s: float
    max_seconds: float
    stream_over_s: float = STREAM_OVER_SECONDS
    min_tail_s: float = 0.5  # audiosearch.models.aggregate.min_tail_seconds of the model


def relative_reason(job: DecodeJob, err: Exception | str) -> str:
    """The error's message with the file named by its library path (absolute paths say nothing to users)."""
    return str(err).replace(job.full, job.path)
