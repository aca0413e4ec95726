"""DualEncoder on the paper towers (random init) and the lite towers: shapes, loss, save/load, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from audiosearch.core.errors import ModelLoadError
from audiosearch.models import DualEncoder, InvalidInputError, load_model, nt_xent, save_model
from audiosearch.models.config import ModelConfig, TowerConfig
from tests.models.tiny import tiny_paper_config


@pytest.fixture(scope="module")
def tiny() -> DualEncoder:
    torch.manual_seed(0)
    return DualEncoder(tiny_paper_config())


@pytest.fixture(scope="module")
def ten_seconds(shared_data) -> np.ndarray:
    from audiosearch.models import load_audio

    wave = load_audio(shared_data / "esc10" / "dog_bark" / "1-100032-A.ogg", 32000)
    return np.pad(wave, (0, 320000 - len(wave)))[None]


@pytest.mark.slow
def test_full_size_passt_random_init_gives_unit_1024_vectors(ten_seconds: np.ndarray, capsys) -> None:
    cfg = tiny_paper_config()
    cfg.audio = TowerConfig("passt", {"arch": "passt_s_swa_p16_128_ap476"})  # real PaSST-S size
    cfg.embed_dim = 1024
    model = DualEncoder(cfg)
    emb = model.encode_audio(ten_seconds, 32000)
    assert isinstance(emb, np.ndarray) and emb.shape == (1, 1024) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert "patch_embed" not in capsys.readouterr().out  # hear21passt's shape prints stay off the console


def test_text_first_token_of_tiny_roberta(tiny: DualEncoder) -> None:
    tok = tiny.text_tower.tokenize(["A dog, barking!", "rain"])
    hidden = tiny.text_tower.model(**tok).last_hidden_state
    with torch.no_grad():
        assert torch.allclose(tiny.text_tower(**tok), hidden[:, 0])
    emb = tiny.encode_text(["A dog, barking!", "rain"])
    assert isinstance(emb, np.ndarray) and emb.shape == (2, 48)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    with torch.no_grad():
        direct = F.normalize(tiny.text_proj(tiny.text_tower(**tok)), dim=-1).numpy()
    np.testing.assert_allclose(emb, direct, atol=1e-6)  # the inference API is the training forward


def test_roberta_captions_are_lowercased_without_punctuation(tiny: DualEncoder) -> None:
    a = tiny.text_tower.tokenize(["A Dog, barking!"])["input_ids"]
    b = tiny.text_tower.tokenize(["a dog barking"])["input_ids"]
    assert torch.equal(a, b)


def test_audio_encoding_is_deterministic_and_batch_independent(tiny: DualEncoder, ten_seconds) -> None:
    two = np.concatenate([ten_seconds, 0.5 * ten_seconds])
    batched = tiny.encode_audio(two, 32000, batch_size=2)
    single = tiny.encode_audio(ten_seconds, 32000)
    np.testing.assert_allclose(batched[0], single[0], atol=1e-5)
    np.testing.assert_array_equal(tiny.encode_audio(ten_seconds, 32000), single)
    assert np.abs(batched[1] - single[0]).max() > 1e-3  # a quieter copy is another input, not a cache hit


def test_resamples_other_rates(lite_model, ten_seconds) -> None:
    """Input at another rate is resampled to the tower's (16 kHz for lite): the same vector as resampling
    first, and not the vector of the same samples read at the tower's rate (which would be another sound)."""
    import librosa

    at32k = ten_seconds  # (1, 320000) at 32 kHz
    at16k = librosa.resample(at32k[0], orig_sr=32000, target_sr=16000, res_type="soxr_hq")[None]
    emb = lite_model.encode_audio(at32k, 32000)
    assert float(emb[0] @ lite_model.encode_audio(at16k, 16000)[0]) > 0.999
    assert float(emb[0] @ lite_model.encode_audio(at32k[:, :160000], 16000)[0]) < 0.99  # measured 0.979


def test_loss_matches_hand_computation_and_is_symmetric() -> None:
    torch.manual_seed(1)
    a = F.normalize(torch.randn(4, 8), dim=1)
    t = F.normalize(torch.randn(4, 8), dim=1)
    log_t = torch.tensor(math.log(0.05))
    sim = (a @ t.T).numpy() / 0.05
    a2t = np.mean([-(sim[i, i] - np.log(np.exp(sim[i]).sum())) for i in range(4)])
    t2a = np.mean([-(sim[i, i] - np.log(np.exp(sim[:, i]).sum())) for i in range(4)])
    assert nt_xent(a, t, log_t).item() == pytest.approx((a2t + t2a) / 2, rel=1e-5)
    assert nt_xent(t, a, log_t).item() == pytest.approx(nt_xent(a, t, log_t).item(), rel=1e-6)


def test_loss_counts_every_caption_of_a_clip_as_positive() -> None:
    a = F.normalize(torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]]), dim=1)  # rows 0, 1: same clip
    t = F.normalize(torch.tensor([[0.9, 0.1], [0.6, 0.8], [0.1, 1.0]]), dim=1)
    ids = np.array([7, 7, 9])
    sim = (a @ t.T).numpy() / 0.1
    target = (ids[:, None] == ids[None, :]).astype(float)
    target /= target.sum(axis=1, keepdims=True)

    def side(s: np.ndarray) -> float:
        logp = s - np.log(np.exp(s).sum(axis=1, keepdims=True))
        return float(-(target * logp).sum(axis=1).mean())

    expected = (side(sim) + side(sim.T)) / 2
    got = nt_xent(a, t, torch.tensor(math.log(0.1)), audio_ids=torch.tensor(ids))
    assert got.item() == pytest.approx(expected, rel=1e-5)
    assert got.item() != pytest.approx(nt_xent(a, t, torch.tensor(math.log(0.1))).item(), rel=1e-3)


def test_save_load_round_trip_gives_identical_outputs(tiny: DualEncoder, ten_seconds, tmp_path) -> None:
    with torch.no_grad():
        tiny.log_temperature.fill_(math.log(0.07))
    save_model(tiny, tmp_path / "m")
    assert {p.name for p in (tmp_path / "m").iterdir()} == {"config.json", "model.safetensors", "provenance.json"}
    back = load_model(tmp_path / "m")
    # never trained: the sidecar says so, and the reloaded model knows it
    assert back.provenance["projections"]["from"] == "random"
    assert back.provenance["text_tower"]["from"] == "random"  # built from a transformers config
    np.testing.assert_array_equal(back.encode_audio(ten_seconds, 32000), tiny.encode_audio(ten_seconds, 32000))
    np.testing.assert_array_equal(back.encode_text(["a dog"]), tiny.encode_text(["a dog"]))
    assert back.log_temperature.item() == pytest.approx(math.log(0.07))
    assert back.fingerprint == load_model(tmp_path / "m").fingerprint


def test_lite_profile_offline_vectors_are_384_d() -> None:
    """lite's queries are MiniLM's own sentence vectors (an identity text projection, no zero padding)."""
    model = load_model("lite")
    texts = ["dog barking", "a dog barks loudly", "heavy rain on a roof"]
    emb = model.encode_text(texts)
    assert emb.shape == (3, 384) and model.sample_rate == 16000  # lite's audio side is YAMNet-based
    with torch.no_grad():
        own = F.normalize(model.text_tower(**model.text_tower.tokenize(texts)), dim=-1).numpy()
    np.testing.assert_allclose(emb, own, atol=1e-5)
    assert (np.abs(emb) > 0).all()  # every dimension used, none padding
    assert float(emb[0] @ emb[1]) > float(emb[0] @ emb[2]) + 0.3  # a sentence space (measured 0.71 vs 0.19)


def test_lite_checkpoint_stores_only_trained_parts(tmp_path) -> None:
    model = load_model("lite")
    save_model(model, tmp_path / "lite")
    size = (tmp_path / "lite" / "model.safetensors").stat().st_size
    # the projections (1929 -> 384 and 384 -> 384, 3.6 MB) and the temperature; the frozen towers (MiniLM
    # alone is 90 MB) come from their packages
    assert size < 4_000_000
    again = load_model(tmp_path / "lite")
    np.testing.assert_array_equal(again.encode_text(["rain"]), model.encode_text(["rain"]))


@pytest.mark.parametrize(
    ("waves", "sr", "message"),
    [
        (np.zeros((1, 0), dtype=np.float32), 32000, "empty"),
        (np.full((1, 3200), np.nan, dtype=np.float32), 32000, "NaN"),
        (np.zeros(3200, dtype=np.float32), 32000, "batch, samples"),
        (np.zeros((1, 2, 3200), dtype=np.float32), 32000, "batch, samples"),
        (np.zeros((1, 100), dtype=np.float32), 0, "sample_rate"),
        ([np.zeros(1000 * 8000, dtype=np.float32)], 8000, "windows"),
        ([], 32000, "no waveforms"),
    ],
)
def test_bad_audio_raises_clear_value_error(tiny: DualEncoder, waves, sr, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        tiny.encode_audio(waves, sr)


@pytest.mark.parametrize(
    ("texts", "message"),
    [([], "non-empty"), (["  "], "empty"), ([3], "not a string"), ("a dog", "non-empty list"), (["x" * 5000], "limit")],
)
def test_bad_text_raises_clear_value_error(tiny: DualEncoder, texts, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        tiny.encode_text(texts)


def test_unknown_model_and_bad_config_are_clear(tmp_path) -> None:
    with pytest.raises(ModelLoadError, match="unknown model"):
        load_model("no-such-profile")
    with pytest.raises(ModelLoadError, match="projection"):
        DualEncoder(ModelConfig("x", TowerConfig("aisfx"), TowerConfig("minilm"), projection="cubic"))
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="config.json"):
        load_model(tmp_path)
