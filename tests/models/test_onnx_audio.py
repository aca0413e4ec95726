"""ONNX audio export: parity with torch on real clips, picked up by load_model, refused where it does not apply."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from audiosearch.app.cli import COMMANDS
from audiosearch.app.cli import _onnx_dir as onnx_dir
from audiosearch.app.cli import main as cli
from audiosearch.app.cli_args import build_parser
from audiosearch.app.settings import load_settings
from audiosearch.core.errors import ModelLoadError
from audiosearch.models import load_audio, load_encoder, load_model
from audiosearch.models.checkpoint import fingerprint
from audiosearch.models.dual_encoder import DualEncoder
from audiosearch.models.onnx.audio import OnnxAudioEncoder, attach_audio_onnx
from audiosearch.models.onnx.export import export_audio_onnx
from audiosearch.models.onnx.text import OnnxTextSide
from tests.models.tiny import tiny_paper_config


def _clips(shared_data, sample_rate: int, seconds: list[float]) -> list[np.ndarray]:
    """Real clips from different classes, cut to the given lengths (ragged, like a library's last windows)."""
    paths = [sorted((shared_data / "esc10" / c).glob("*.ogg"))[0] for c in ("dog_bark", "rain", "rooster", "sea_waves")]
    return [load_audio(p, sample_rate)[: int(s * sample_rate)] for p, s in zip(paths, seconds, strict=False)]


def _min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)).min())


@pytest.fixture(scope="module")
def aisfx_export(tmp_path_factory):
    out = tmp_path_factory.mktemp("aisfx-onnx")
    assert cli(["export-onnx", "--model", "aisfx", "--out", str(out), "--audio"]) == 0
    return out


@pytest.mark.slow
def test_aisfx_export_is_used_by_encode_audio(aisfx_export, shared_data, monkeypatch) -> None:
    model = load_model("aisfx", onnx_dir=aisfx_export)  # as load_encoder loads it for the indexer and the service
    assert isinstance(model.audio_onnx, OnnxAudioEncoder)
    widths: list[int] = []
    embed = model.audio_onnx.embed
    monkeypatch.setattr(model.audio_onnx, "embed", lambda w, n: widths.append(w.shape[1]) or embed(w, n))
    waves = _clips(shared_data, 44100, [5.0, 2.0, 3.3, 1.5])
    onnx = model.encode_audio(waves, 44100, batch_size=2)
    assert widths == [5 * 44100, int(3.3 * 44100)]  # two batches, each cropped to its longest clip
    model.train()  # training changes the weights the export was made from: back to torch for good
    assert model.audio_onnx is None
    plain = model.eval().encode_audio(waves, 44100, batch_size=2)
    assert len(widths) == 2
    assert _min_cosine(onnx, plain) > 0.999
    assert np.abs(onnx - plain).max() < 1e-3  # same vectors, so an index and its cache stay valid


@pytest.mark.slow
def test_another_model_refuses_the_export(aisfx_export, tmp_path) -> None:
    with pytest.raises(ModelLoadError, match="export again"):
        load_model("lite", onnx_dir=aisfx_export)
    assert attach_audio_onnx(torch.nn.Module(), tmp_path) is False  # type: ignore[arg-type]  # no audio export
    assert attach_audio_onnx(torch.nn.Module(), None) is False  # type: ignore[arg-type]


@pytest.mark.parametrize("given", ["--onnx", "AUDIOSEARCH_ONNX_DIR"])
def test_one_onnx_setting_reaches_both_sides(aisfx_export, monkeypatch, given: str) -> None:
    monkeypatch.delenv("AUDIOSEARCH_ONNX_DIR", raising=False)
    argv = ["search", "a dog", "--index", "idx", "--model", "aisfx"]
    if given == "--onnx":
        argv += ["--onnx", str(aisfx_export)]
    else:
        monkeypatch.setenv(given, str(aisfx_export))
    args = build_parser(COMMANDS).parse_args(argv)  # parsing only: no handler runs
    assert load_settings().onnx_dir == (aisfx_export if given != "--onnx" else None)  # the service's setting
    model = load_encoder(args.model, "cpu", onnx_dir(args))
    assert isinstance(model.audio_onnx, OnnxAudioEncoder)
    assert isinstance(model.text_onnx, OnnxTextSide) and model.text_onnx.directory == aisfx_export


def test_export_refused_where_it_does_not_pay(tmp_path, capsys) -> None:
    assert cli(["export-onnx", "--model", "lite", "--out", str(tmp_path / "x"), "--audio"]) == 1
    assert "no ONNX path" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()  # refused before the text export wrote anything


@pytest.mark.slow
def test_tiny_passt_export_matches_torch(shared_data, tmp_path) -> None:
    config = tiny_paper_config()
    model = DualEncoder(config)
    model.fingerprint = fingerprint(None, config)
    enc = OnnxAudioEncoder(export_audio_onnx(model, tmp_path), model)
    width = 10 * 32000
    assert enc.samples == width and enc.accepts(width) and not enc.accepts(width - 1)  # PaSST's fixed input
    waves = _clips(shared_data, 32000, [10.0, 10.0, 4.0])
    batch = np.zeros((len(waves), width), dtype=np.float32)
    for i, w in enumerate(waves):
        batch[i, : len(w)] = w
    lens = np.array([len(w) for w in waves])
    with torch.inference_mode():
        ref = model.embed_audio(torch.from_numpy(batch), torch.from_numpy(lens)).numpy()
    assert _min_cosine(enc.embed(batch, lens), ref) > 0.999
    assert _min_cosine(copy.deepcopy(enc).embed(batch, lens), ref) > 0.999  # reopened, as for Ray workers
    model.audio_onnx = enc  # a batch of another width goes through torch, unchanged
    short = model.encode_audio([waves[2]], 32000)
    model.audio_onnx = None
    assert np.array_equal(short, model.encode_audio([waves[2]], 32000))
