"""The text side on onnxruntime + tokenizers (the default on CPUs): parity with torch, the export cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings

import numpy as np
import onnx
import pytest

from audiosearch.core.errors import ModelLoadError
from audiosearch.models import load_encoder
from audiosearch.models.onnx.export import export_text_onnx
from audiosearch.models.onnx.text import OnnxTextSide, cache_root
from tests.conftest import REPO

QUERIES = [
    "a dog barking",
    "Glass shattering on a hard floor, people screaming!",
    "x",
    "雨の音",
    "footsteps on gravel " * 60,
    "🐓 rooster at dawn",
    "the hum of a refrigerator at night",
    "ÉCOLE d'été",
]


@pytest.fixture(scope="module")
def exported(lite_torch, tmp_path_factory):
    return export_text_onnx(lite_torch, tmp_path_factory.mktemp("onnx") / "text")


@pytest.mark.slow
def test_onnx_matches_torch(exported, lite_torch) -> None:
    onnx = OnnxTextSide(exported, lite_torch.fingerprint).encode(QUERIES)
    torch_vecs = lite_torch.encode_text(QUERIES)
    cos = (onnx * torch_vecs).sum(axis=1)  # both unit vectors
    assert cos.min() > 0.999, cos
    assert np.abs(onnx - torch_vecs).max() < 1e-4


@pytest.mark.slow
def test_tokenizers_give_the_torch_towers_ids(exported, lite_torch) -> None:
    side = OnnxTextSide(exported, lite_torch.fingerprint)
    ours = side.tokenize(QUERIES)
    theirs = lite_torch.text_tower.tokenize(QUERIES)
    np.testing.assert_array_equal(ours["input_ids"], theirs["input_ids"].numpy())
    np.testing.assert_array_equal(ours["attention_mask"], theirs["attention_mask"].numpy())
    assert ours["input_ids"].shape[1] == 128  # the long query is cut at MiniLM's max_tokens


@pytest.mark.slow
def test_onnx_refuses_another_model(exported, lite_torch, tmp_path) -> None:
    meta = json.loads((exported / "export.json").read_text())
    for name in ("text.onnx", "tokenizer.json"):
        (tmp_path / name).symlink_to(exported / name)
    (tmp_path / "export.json").write_text(json.dumps({**meta, "fingerprint": "other-123"}))
    with pytest.raises(ModelLoadError, match="export again"):
        OnnxTextSide(tmp_path, lite_torch.fingerprint)
    with pytest.raises(ModelLoadError, match="not an ONNX text export"):
        OnnxTextSide(tmp_path / "missing", lite_torch.fingerprint)
    with pytest.raises(ModelLoadError, match="not an ONNX export"):  # neither side's export
        load_encoder("lite", onnx_dir=tmp_path / "missing")


def test_the_runtime_builds_its_export_once_and_reuses_it(lite_model) -> None:
    folder = cache_root() / lite_model.fingerprint
    assert (folder / "export.json").is_file()  # made when the session's lite model first loaded
    # MiniLM's torch-free graph even with torch installed: it costs less CPU per query than torch's export
    assert onnx.load(str(folder / "text.onnx")).producer_name == "audiosearch"
    made = (folder / "text.onnx").stat().st_mtime_ns
    again = load_encoder("lite")
    assert (folder / "text.onnx").stat().st_mtime_ns == made
    np.testing.assert_array_equal(again.encode_text(["rain"]), lite_model.encode_text(["rain"]))


LITE_WITHOUT_TORCH = """
import sys
import warnings
import numpy as np
from audiosearch.models import load_encoder
m = load_encoder("lite")
v = m.encode_audio(0.1 * np.random.default_rng(0).standard_normal((1, 16000), dtype=np.float32), 16000)
t = m.encode_text(["a dog barks"])
print(type(m).__name__, v.shape, t.shape, "torch" in sys.modules, "transformers" in sys.modules)
"""


def test_lite_encodes_without_importing_torch(lite_model) -> None:
    done = subprocess.run(
        [sys.executable, "-c", LITE_WITHOUT_TORCH],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ.copy(),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    name, *_, torch_loaded, transformers_loaded = done.stdout.split()
    assert name == "SlimEncoder" and (torch_loaded, transformers_loaded) == ("False", "False")
    assert "(1, 384) (1, 384)" in done.stdout


def test_onnxruntime_is_asked_for_its_cpu_provider_alone(lite_model, capfd) -> None:
    """lite's sessions (YAMNet, the text export; the torch model builds the same YAMNet core) run on the CPU
    provider also where onnxruntime-gpu lists CUDA (docs/gpu.md says why). Asking for a provider this install
    lacks warns; asking onnxruntime-gpu for a CUDA provider that cannot load printed an error per session."""
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*provider", category=UserWarning)
        slim = load_encoder("lite")
    for session in (slim.audio_core.bridge.tagger.session, slim.text_side.session):
        assert session.get_providers() == ["CPUExecutionProvider"]
        assert list(session.get_provider_options()) == ["CPUExecutionProvider"]
    assert "CUDAExecutionProvider" not in capfd.readouterr().err
