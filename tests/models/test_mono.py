"""to_mono: channel averaging equals numpy's mean over channels, bit for bit, on real multichannel files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audiosearch.models.audio import load_audio, resample, to_mono


@pytest.mark.parametrize("channels", [1, 2, 3, 6, 7])
def test_to_mono_is_the_channel_mean(channels: int) -> None:
    wave = np.random.default_rng(channels).standard_normal((48_000, channels)).astype(np.float32)
    assert np.array_equal(to_mono(wave), wave.mean(axis=1))
    assert to_mono(wave).dtype == np.float32 and to_mono(wave).flags.c_contiguous


def test_stereo_file_decodes_to_the_mean_of_its_channels(tmp_path: Path) -> None:
    clip = sorted((Path(__file__).resolve().parents[2] / "app" / "sample" / "esc10").glob("*/*.ogg"))[0]
    mono, sr = sf.read(clip, dtype="float32")
    stereo = np.stack([mono, -0.5 * mono], axis=1)  # distinct channels, so a dropped one would show
    path = tmp_path / "stereo.wav"
    sf.write(path, stereo, sr, subtype="FLOAT")
    expected = resample(stereo.mean(axis=1), sr, 32000)
    assert np.array_equal(load_audio(path, 32000), expected)
