"""Synthetic audio for tests that need no shared data: distinct, reproducible sounds written as WAV files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

SR = 16000


def sound(i: int, seconds: float = 1.0, sr: int = SR) -> np.ndarray:
    """The i-th of 16 clearly different sounds: tones alternating with noise in bands, both rising by a third
    of an octave per i, all below 8 kHz (i + 16 is i again, in another noise draw); the same samples for the
    same i in every process."""
    step = i % 16
    t = np.arange(int(seconds * sr)) / sr
    if step % 2 == 0:
        wave = 0.5 * np.sin(2 * np.pi * 250.0 * 2 ** (step / 3) * t)
    else:
        rng = np.random.default_rng(i)
        spectrum = np.fft.rfft(rng.standard_normal(len(t)))
        freqs = np.fft.rfftfreq(len(t), 1 / sr)
        lo = 200.0 * 2 ** (step / 3)
        spectrum[(freqs < lo) | (freqs > 2 * lo)] = 0
        wave = np.fft.irfft(spectrum, len(t))
        wave *= 0.3 / np.abs(wave).max()
    return wave.astype(np.float32)


def write_library(root: Path, layout: dict[str, int], seconds: float = 1.0, sr: int = SR) -> list[Path]:
    """root/<folder>/<folder>-<n>.wav for each folder and count, every file a different `sound`, in order."""
    paths, i = [], 0
    for folder, n in layout.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        for k in range(n):
            path = root / folder / f"{folder}-{k}.wav"
            sf.write(path, sound(i, seconds, sr), sr)
            paths.append(path)
            i += 1
    return paths
