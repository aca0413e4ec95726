"""Decoding and windowing: the one place where audio files become model-ready waveforms."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from audiosearch.core.errors import AudioDecodeError, InvalidInputError

log = logging.getLogger(__name__)

AUDIO_EXTENSIONS = frozenset({".wav", ".flac", ".ogg", ".oga", ".mp3", ".aiff", ".aif", ".m4a", ".opus"})
# Files longer than this are read in blocks (`stream_windows`) rather than decoded whole, so a
# multi-hour recording costs a few blocks of memory instead of gigabytes.
STREAM_OVER_SECONDS = 600.0


@dataclass(frozen=True)
class AudioInfo:
    duration: float
    sample_rate: int
    channels: int
    blockwise: bool = True  # soundfile reads it, so `stream_windows` can read it block by block


@dataclass(frozen=True)
class Windows:
    """Fixed-length windows cut from one waveform, with their place in the source in seconds."""

    waves: np.ndarray  # (n, window_samples) float32
    starts: np.ndarray  # (n,) seconds
    ends: np.ndarray  # (n,) seconds, clipped to the real audio
    lengths: np.ndarray  # (n,) samples of real audio in each window (rest is zero padding)


def probe(path: str | Path) -> AudioInfo:
    """Header-level facts about a file, without decoding all of it where the format allows."""
    try:
        info = sf.info(str(path))
        return AudioInfo(duration=float(info.duration), sample_rate=int(info.samplerate), channels=info.channels)
    except Exception:  # soundfile cannot read mp3/m4a headers everywhere: fall back to a decode
        wave, sr = _decode(path)
        return AudioInfo(duration=len(wave) / sr, sample_rate=sr, channels=1, blockwise=False)


def load_audio(path: str | Path, sample_rate: int) -> np.ndarray:
    """Decode any supported file to mono float32 at `sample_rate`; raise AudioDecodeError with the reason."""
    wave, sr = _decode(path)
    wave = to_mono(wave)
    check_waveform(wave, where=str(path))
    out = resample(wave, sr, sample_rate)
    if out.size == 0:  # e.g. one sample at 44.1 kHz is less than one at 16 kHz
        raise AudioDecodeError(f"{path}: too short ({len(wave)} samples at {sr} Hz)")
    return out


def decode_head(path: str | Path, seconds: float) -> tuple[np.ndarray, int]:
    """(samples, channels) float32 and the rate of at most the first `seconds` of a file: soundfile reads
    only those frames, librosa (formats soundfile cannot open) stops decoding there."""
    return _decode(path, seconds)


def _decode(path: str | Path, seconds: float | None = None) -> tuple[np.ndarray, int]:
    p = Path(path)
    if not p.is_file():
        raise AudioDecodeError(f"{p}: not a readable file")
    if p.stat().st_size == 0:
        raise AudioDecodeError(f"{p}: empty file")
    try:
        with sf.SoundFile(str(p)) as f:
            frames = -1 if seconds is None else int(seconds * f.samplerate)
            return f.read(frames, dtype="float32", always_2d=True), int(f.samplerate)
    except Exception as sf_error:
        return _decode_librosa(p, sf_error, seconds)


def _decode_librosa(p: Path, sf_error: Exception, seconds: float | None = None) -> tuple[np.ndarray, int]:
    import warnings

    try:
        import librosa
    except ImportError:  # the slim runtime: libsndfile's formats only (wav, flac, ogg, opus, mp3, aiff)
        raise AudioDecodeError(
            f"{p}: cannot decode ({_short(sf_error)}; other formats need audiosearch[full] and ffmpeg)"
        ) from None

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            wave, sr = librosa.load(str(p), sr=None, mono=False, duration=seconds)
    except Exception as lr_error:
        if "does not exist" in str(sf_error):  # libsndfile's words for "no format recognised" (e.g. mp3 name)
            raise AudioDecodeError(f"{p}: cannot decode (not a recognised audio format)") from None
        raise AudioDecodeError(f"{p}: cannot decode ({_short(sf_error)}; {_short(lr_error)})") from None
    wave = np.asarray(wave, dtype=np.float32)
    return (wave[:, None] if wave.ndim == 1 else wave.T), int(sr)


def _short(err: Exception) -> str:
    return str(err).splitlines()[0][:160] if str(err) else type(err).__name__


def to_mono(wave: np.ndarray) -> np.ndarray:
    """(samples,) or (samples, channels) -> (samples,) float32 by averaging channels."""
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim == 2:
        # Whole columns added in order, then divided: what mean(axis=1) computes for fewer than 8 channels,
        # but 15x faster (mean reduces each row on its own: 11 ms for 10 s of stereo at 44.1 kHz).
        mono = wave[:, 0].copy()
        for c in range(1, wave.shape[1]):
            mono += wave[:, c]
        wave = mono / np.float32(wave.shape[1]) if wave.shape[1] > 1 else mono
    if wave.ndim != 1:
        raise InvalidInputError(f"audio must be 1-D or (samples, channels), got shape {wave.shape}")
    return wave


def check_waveform(wave: np.ndarray, where: str = "audio") -> None:
    """Reject input that would silently produce garbage embeddings."""
    if wave.size == 0:
        raise AudioDecodeError(f"{where}: no samples")
    if not np.isfinite(wave).all():
        raise AudioDecodeError(f"{where}: contains NaN or infinite samples")


def resample(wave: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    if orig_sr <= 0:
        raise InvalidInputError(f"sample rate must be positive, got {orig_sr}")
    if orig_sr == target_sr:
        return np.ascontiguousarray(wave, dtype=np.float32)
    # soxr HQ is what librosa's default "soxr_hq" calls; importing soxr alone keeps workers light.
    return soxr.resample(wave, orig_sr, target_sr, quality="HQ").astype(np.float32, copy=False)


def cut_windows(
    wave: np.ndarray,
    sample_rate: int,
    window_s: float = 10.0,
    hop_s: float | None = None,
    min_tail_s: float = 0.5,
) -> Windows:
    """Cut a mono waveform into fixed windows; the last (or only) window is zero-padded.

    A clip shorter than one window gives one padded window. A tail shorter than `min_tail_s`
    after the last full window is not worth a window of its own (decoders round 10 s to 10.02 s).
    """
    if window_s <= 0 or (hop_s is not None and hop_s <= 0):
        raise InvalidInputError("window and hop must be positive seconds")
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim != 1:
        raise InvalidInputError(f"cut_windows expects a mono 1-D waveform, got shape {wave.shape}")
    check_waveform(wave)
    win = int(round(window_s * sample_rate))
    hop = int(round((hop_s or window_s) * sample_rate))
    cutter = WindowCutter(win, hop, int(min_tail_s * sample_rate), sample_rate, chunk=len(wave) // hop + 2)
    (windows,) = [*cutter.feed(wave), *cutter.finish()]  # a chunk holds every window: one Windows
    return windows


class WindowCutter:
    """The one windowing rule, fed a whole waveform (`cut_windows`) or block by block (`stream_windows`):
    full windows every hop, then one padded tail window if more than `min_tail` samples are left (or a
    single padded window for short input). Yields `Windows` of at most `chunk` windows."""

    def __init__(self, win: int, hop: int, min_tail: int, sample_rate: int, chunk: int) -> None:
        self.win, self.hop, self.min_tail, self.sr, self.chunk = win, hop, min_tail, sample_rate, max(1, chunk)
        self.buf = np.zeros(0, dtype=np.float32)
        self.buf_at = 0  # stream position of buf[0]
        self.next_start = 0
        self.total = 0
        self.pending: list[tuple[int, np.ndarray]] = []

    def feed(self, samples: np.ndarray) -> Iterator[Windows]:
        self.total += len(samples)
        self.buf = np.concatenate([self.buf, samples]) if len(self.buf) else samples
        while self.next_start + self.win <= self.buf_at + len(self.buf):
            lo = self.next_start - self.buf_at
            self.pending.append((self.next_start, self.buf[lo : lo + self.win]))  # a view, copied by _emit
            self.next_start += self.hop
            if len(self.pending) >= self.chunk:
                yield self._emit()
        drop = min(self.next_start - self.buf_at, len(self.buf))
        self.buf, self.buf_at = self.buf[drop:], self.buf_at + drop

    def finish(self) -> Iterator[Windows]:
        emitted_any = self.next_start > 0
        last_full = self.next_start - self.hop
        if not emitted_any or (self.total > self.win and self.total - (last_full + self.win) > self.min_tail):
            start = self.next_start if emitted_any else 0
            piece = self.buf[start - self.buf_at : start - self.buf_at + self.win]
            self.pending.append((start, piece))
        if self.pending:
            yield self._emit()

    def _emit(self) -> Windows:
        waves = np.zeros((len(self.pending), self.win), dtype=np.float32)
        lengths = np.zeros(len(self.pending), dtype=np.int64)
        for i, (_, piece) in enumerate(self.pending):
            waves[i, : len(piece)] = piece
            lengths[i] = len(piece)
        starts = np.array([s for s, _ in self.pending], dtype=np.float64) / self.sr
        self.pending = []
        return Windows(waves=waves, starts=starts, ends=starts + lengths / self.sr, lengths=lengths)
