"""Decoding and windowing: the one place where audio files become model-ready waveforms."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from models.errors import AudioDecodeError, InvalidInputError

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


def _decode(path: str | Path) -> tuple[np.ndarray, int]:
    p = Path(path)
    if not p.is_file():
        raise AudioDecodeError(f"{p}: not a readable file")
    if p.stat().st_size == 0:
        raise AudioDecodeError(f"{p}: empty file")
    try:
        wave, sr = sf.read(str(p), dtype="float32", always_2d=True)
        return wave, int(sr)
    except Exception as sf_error:
        return _decode_librosa(p, sf_error)


def _decode_librosa(p: Path, sf_error: Exception) -> tuple[np.ndarray, int]:
    import warnings

    import librosa

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            wave, sr = librosa.load(str(p), sr=None, mono=False)
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
        wave = wave.mean(axis=1)
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
    starts = _window_starts(len(wave), win, hop, int(min_tail_s * sample_rate))
    waves = np.zeros((len(starts), win), dtype=np.float32)
    lengths = np.zeros(len(starts), dtype=np.int64)
    for i, s in enumerate(starts):
        piece = wave[s : s + win]
        waves[i, : len(piece)] = piece
        lengths[i] = len(piece)
    starts_s = np.asarray(starts, dtype=np.float64) / sample_rate
    return Windows(waves=waves, starts=starts_s, ends=starts_s + lengths / sample_rate, lengths=lengths)


def _window_starts(n: int, win: int, hop: int, min_tail: int) -> list[int]:
    if n <= win:
        return [0]
    starts = list(range(0, n - win + 1, hop))
    if n - (starts[-1] + win) > min_tail:
        starts.append(starts[-1] + hop)
    return starts
