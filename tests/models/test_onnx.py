"""ONNX text encoder: parity with torch, used by the service when present, refused for another model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from models.errors import ModelLoadError
from models.onnx_text import OnnxTextEncoder, export_text_onnx

QUERIES = ["a dog barking", "Glass shattering on a hard floor, people screaming!", "x", "雨の音",
           "footsteps on gravel " * 20, "🐓 rooster at dawn", "the hum of a refrigerator at night"]


@pytest.fixture(scope="module")
def exported(lite_model, tmp_path_factory):
    return export_text_onnx(lite_model, tmp_path_factory.mktemp("onnx"))


def test_onnx_matches_torch(exported, lite_model) -> None:
    onnx = OnnxTextEncoder(exported, lite_model).encode_text(QUERIES)
    torch_vecs = lite_model.encode_text(QUERIES).numpy()
    cos = (onnx * torch_vecs).sum(axis=1) / np.linalg.norm(onnx, axis=1) / np.linalg.norm(torch_vecs, axis=1)
    assert cos.min() > 0.999, cos


def test_onnx_refuses_another_model(exported, lite_model, tmp_path) -> None:
    meta = json.loads((exported / "export.json").read_text())
    (tmp_path / "text.onnx").symlink_to(exported / "text.onnx")
    (tmp_path / "export.json").write_text(json.dumps({**meta, "fingerprint": "other-123"}))
    with pytest.raises(ModelLoadError, match="export again"):
        OnnxTextEncoder(tmp_path, lite_model)
    with pytest.raises(ModelLoadError, match="not an ONNX text export"):
        OnnxTextEncoder(tmp_path / "missing", lite_model)


def test_service_uses_the_export(exported, lite_model, shared_data, tmp_path) -> None:
    from app.search_service import SearchService
    from indexer import IndexOptions, build_index
    from tests.conftest import copy_clips

    copy_clips(shared_data, tmp_path / "lib", {"rain": 2, "rooster": 2})
    build_index(tmp_path / "lib", tmp_path / "idx", lite_model, IndexOptions(workers=0, progress=False))
    with_onnx = SearchService(lite_model, tmp_path / "idx", onnx_dir=exported)
    plain = SearchService(lite_model, tmp_path / "idx")
    assert with_onnx.onnx is not None
    a = with_onnx.search_text(["rain on a roof"], k=4)[0].hits
    b = plain.search_text(["rain on a roof"], k=4)[0].hits
    assert [h.file_id for h in a] == [h.file_id for h in b]
    assert [h.score for h in a] == pytest.approx([h.score for h in b], abs=1e-4)
