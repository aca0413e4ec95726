"""PaSST log-mel front end: against an independent numpy computation and hear21passt's own module."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from audiosearch.models.frontend import PasstMel


def numpy_passt_mel(wave: np.ndarray) -> np.ndarray:
    """Textbook re-derivation: pre-emphasis, symmetric Hann 800 in a 1024 FFT, Kaldi mel 0-15 kHz."""
    x = wave[1:] - 0.97 * wave[:-1]
    n_fft, hop, win = 1024, 320, 800
    padded = np.pad(x, n_fft // 2, mode="reflect")
    frames = 1 + (len(padded) - n_fft) // hop
    window = np.zeros(n_fft)
    off = (n_fft - win) // 2
    window[off : off + win] = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win) / (win - 1))
    idx = np.arange(n_fft)[None, :] + hop * np.arange(frames)[:, None]
    power = np.abs(np.fft.rfft(padded[idx] * window, axis=1)) ** 2  # (frames, 513)

    def mel(f: np.ndarray | float) -> np.ndarray:
        return 1127.0 * np.log(1.0 + np.asarray(f) / 700.0)

    lo, hi = mel(0.0), mel(15000.0)
    delta = (hi - lo) / 129
    centers = lo + delta * np.arange(130)
    fft_mel = mel(32000 / n_fft * np.arange(512))
    banks = np.zeros((128, 513))
    for m in range(128):
        up = (fft_mel - centers[m]) / (centers[m + 1] - centers[m])
        down = (centers[m + 2] - fft_mel) / (centers[m + 2] - centers[m + 1])
        banks[m, :512] = np.maximum(0.0, np.minimum(up, down))
    return (np.log(banks @ power.T + 1e-5) + 4.5) / 5.0


@pytest.fixture(scope="module")
def clip(shared_data) -> torch.Tensor:
    wave, sr = sf.read(shared_data / "booth" / "CompressedAirSpray" / "compressedAirSpray01.ogg", dtype="float32")
    assert sr == 32000
    return torch.from_numpy(np.pad(wave, (0, 320000 - len(wave))))[None]


def test_ten_seconds_give_128_bins_by_1000_frames(clip: torch.Tensor) -> None:
    out = PasstMel().eval()(clip)
    assert out.shape == (1, 128, 1000)
    assert torch.isfinite(out).all()


def test_matches_independent_numpy_computation(clip: torch.Tensor) -> None:
    ours = PasstMel().eval()(clip)[0].numpy()
    ref = numpy_passt_mel(clip[0].double().numpy())
    assert ref.shape == ours.shape
    np.testing.assert_allclose(ours, ref, atol=1e-4)


def test_matches_hear21passt_in_eval_mode(clip: torch.Tensor) -> None:
    from hear21passt.models.preprocess import AugmentMelSTFT

    ref = AugmentMelSTFT(
        n_mels=128,
        sr=32000,
        win_length=800,
        hopsize=320,
        n_fft=1024,
        freqm=48,
        timem=192,
        fmin=0.0,
        fmax=None,
        fmin_aug_range=10,
        fmax_aug_range=2000,
    ).eval()
    with torch.no_grad():
        np.testing.assert_allclose(PasstMel().eval()(clip).numpy(), ref(clip).numpy(), atol=1e-5)


def test_training_mode_jitters_band_edges_but_eval_is_deterministic(clip: torch.Tensor) -> None:
    mel = PasstMel()
    torch.manual_seed(0)
    a, b = mel.eval()(clip), mel.eval()(clip)
    assert torch.equal(a, b)
    trained = [mel.train()(clip) for _ in range(3)]
    assert any(not torch.allclose(t, a) for t in trained)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_autocast_does_not_reach_the_mel_front_end(dtype: torch.dtype) -> None:
    """Under fp16 autocast (the GPU's inference path) a loud tone's power and mel sums pass fp16's 65504 and
    become inf; the front end stays fp32, so its output is what it is without autocast. CPU autocast stands
    in for CUDA's here (same dispatch: conv1d and matmul are autocast to the low precision on both)."""
    t = np.arange(320000) / 32000
    loud = torch.from_numpy(np.sin(2 * np.pi * 8000 * t).astype(np.float32))[None]
    mel = PasstMel().eval()
    want = mel(loud)
    with torch.autocast("cpu", dtype=dtype):
        got = mel(loud)
    assert got.dtype == torch.float32 and torch.isfinite(got).all()
    torch.testing.assert_close(got, want, rtol=0, atol=0)
