"""The chance-level baseline towers (models/towers/cores/baseline.py): deterministic, discriminating, padding-blind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from audiosearch.models import ModelLoadError, load_encoder
from audiosearch.models.slim import SlimEncoder
from audiosearch.models.towers.cores.baseline import LogMelProjectionCore, baseline_config, mel_filters, save_baseline
from tests.conftest import REPO
from tests.synthetic import SR, sound

TEXTS = ["a dog barking", "Rain on a tin roof.", "狗在叫"]


def test_a_baseline_directory_loads_as_the_slim_runtime(baseline_dir: Path, baseline_model) -> None:
    assert {p.name for p in baseline_dir.iterdir()} == {"config.json", "model.safetensors"}
    assert isinstance(baseline_model, SlimEncoder)
    assert (baseline_model.dim, baseline_model.sample_rate) == (128, 16000)
    assert baseline_model.config.window_seconds == 2.0
    assert baseline_model.fingerprint == load_encoder(baseline_dir).fingerprint
    assert baseline_model.fingerprint.startswith("baseline-")


def test_same_sound_same_vector_in_another_process(baseline_dir: Path, baseline_model) -> None:
    """Seeded projection and MurmurHash words: nothing depends on the process (Python's str hash is salted)."""
    waves = np.stack([sound(i) for i in range(3)])
    # BLAS on one thread on both sides: its summation order (not the process) may change the last bit
    script = (
        "import json, sys, numpy as np\n"
        "from audiosearch.models import load_encoder; from tests.synthetic import sound\n"
        "from threadpoolctl import threadpool_limits; threadpool_limits(1, user_api='blas')\n"
        f"m = load_encoder({str(baseline_dir)!r})\n"
        "a = m.encode_audio(np.stack([sound(i) for i in range(3)]), 16000)\n"
        f"t = m.encode_text({TEXTS!r})\n"
        "print(json.dumps([a.tolist(), t.tolist()]))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True, check=True)
    audio, text = (np.array(x, dtype=np.float32) for x in json.loads(out.stdout))
    with threadpool_limits(1, user_api="blas"):
        np.testing.assert_array_equal(audio, baseline_model.encode_audio(waves, SR))
        np.testing.assert_array_equal(text, baseline_model.encode_text(TEXTS))


def test_different_sounds_differ_and_loudness_does_not_count(baseline_model) -> None:
    waves = np.stack([sound(i) for i in range(12)])
    vecs = baseline_model.encode_audio(waves, SR)
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    sim = vecs @ vecs.T
    off = sim[~np.eye(len(sim), dtype=bool)]
    assert off.max() < 0.9, f"closest two different sounds: cosine {off.max():.3f} (measured 0.886)"
    assert np.median(off) < 0.3, f"median cosine {np.median(off):.3f} (measured -0.09)"
    quieter = baseline_model.encode_audio(0.5 * waves, SR)
    assert (np.sum(quieter * vecs, axis=1) > 0.99).all()  # the level is removed (half as loud: 0.996 and up)


def test_padding_past_lengths_changes_nothing_and_batches_are_independent() -> None:
    core = LogMelProjectionCore()
    a, b = sound(0, 0.7), sound(5, 2.0)
    alone = core(a[None])
    batch = np.zeros((2, 2 * SR), dtype=np.float32)
    batch[0, : len(a)], batch[1] = a, b
    padded = core(batch, np.array([len(a), len(b)]))
    np.testing.assert_allclose(padded[0], alone[0], atol=1e-6)
    np.testing.assert_allclose(padded[1], core(b[None])[0], atol=1e-6)


@pytest.mark.parametrize(("sample_rate", "n_fft", "n_mels"), [(16000, 1024, 64), (8000, 512, 40), (44100, 2048, 128)])
def test_mel_filters_are_librosas(sample_rate: int, n_fft: int, n_mels: int) -> None:
    """Written out because librosa is not in the base install; checked against it where it is."""
    librosa = pytest.importorskip("librosa")
    ref = librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, htk=True, norm="slaney").T
    np.testing.assert_allclose(mel_filters(sample_rate, n_fft, n_mels), ref, rtol=1e-5, atol=1e-8)


def test_silence_is_a_zero_vector_not_nan() -> None:
    out = LogMelProjectionCore()(np.zeros((1, SR), dtype=np.float32))
    assert np.isfinite(out).all() and np.abs(out).max() < 1e-6


def test_hashed_words_ignore_case_order_and_punctuation(baseline_model) -> None:
    a, b, c, d = baseline_model.encode_text(["A dog, barking!", "barking dog a", "rain", "🐕"])
    np.testing.assert_allclose(a, b, atol=1e-7)
    np.testing.assert_allclose([np.linalg.norm(a), np.linalg.norm(c)], 1.0, atol=1e-6)
    assert abs(float(a @ c)) < 0.3  # no shared word
    assert np.abs(d).max() == 0.0  # no word at all: the zero vector, which scores 0 against every clip


def test_the_torch_model_refuses_the_runtime_only_text_side(baseline_dir: Path) -> None:
    with pytest.raises(ModelLoadError, match="'hashed_words' runs only in the slim runtime"):
        load_encoder(baseline_dir, backend="torch")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"audio": {"kind": "logmel_projection", "options": {"dim": 0}}}, "must be positive"),
        ({"text": {"kind": "hashed_words", "options": {"dim": 64}}}, "dim 64 must equal embed_dim 128"),
    ],
)
def test_bad_options_are_clear(tmp_path: Path, change: dict, message: str) -> None:
    directory = save_baseline(tmp_path / "m")
    config = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps({**config, **change}))
    with pytest.raises(ModelLoadError, match=message):
        load_encoder(directory)


def test_other_sample_rates_and_dims(tmp_path: Path) -> None:
    model = load_encoder(save_baseline(tmp_path / "m", baseline_config(dim=32, sample_rate=8000)))
    assert (model.sample_rate, model.dim) == (8000, 32)
    wave = sound(2, 1.0, 8000)
    at16k = model.encode_audio(sound(2, 1.0, 16000)[None], 16000)  # resampled to the tower's 8 kHz
    assert float(model.encode_audio(wave[None], 8000)[0] @ at16k[0]) > 0.99
    assert model.encode_text(["rain"]).shape == (1, 32)
