"""An index of lite's earlier zero-padded 1024-d vectors after the upgrade to 384-d: it keeps answering, and the
next `audiosearch index` run converts it from its cache without embedding any file again."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from audiosearch.app.search_service import SearchService
from audiosearch.indexer import IndexOptions, QuerySpec, Searcher, build_index
from audiosearch.indexer.errors import IndexMismatchError
from audiosearch.models import load_encoder
from audiosearch.models.profiles import CHECKPOINTS
from tests.conftest import copy_clips

pytestmark = pytest.mark.slow  # minutes in all: make test-all and CI run it

FAST = IndexOptions(workers=0, progress=False)
QUERIES = ["a dog barking", "rain falling", "a rooster crowing"]


@pytest.fixture(scope="module")
def models_old_and_new(tmp_path_factory):
    """The shipped lite weights written the old way (padded to 1024 rows) and the new model naming that one
    as the fingerprint it supersedes."""
    root = tmp_path_factory.mktemp("supersede")
    old_dir, new_dir = root / "old", root / "new"
    old_dir.mkdir()
    weights = load_file(str(CHECKPOINTS / "fusion" / "model.safetensors"))
    padded = {
        k: (np.pad(v, [(0, 1024 - v.shape[0])] + [(0, 0)] * (v.ndim - 1)) if "_proj" in k else v)
        for k, v in weights.items()
    }
    save_file(padded, str(old_dir / "model.safetensors"))
    config = json.loads((CHECKPOINTS / "fusion" / "config.json").read_text())
    (old_dir / "config.json").write_text(json.dumps({**config, "embed_dim": 1024, "supersedes": []}))
    old = load_encoder(old_dir)
    shutil.copytree(CHECKPOINTS / "fusion", new_dir)
    new_config = {**config, "supersedes": [{"fingerprint": old.fingerprint, "dim": 1024}]}
    (new_dir / "config.json").write_text(json.dumps(new_config))
    return old, load_encoder(new_dir)


def test_padded_index_answers_the_new_model_then_converts_without_embedding(
    models_old_and_new, shared_data, tmp_path
) -> None:
    old, new = models_old_and_new
    lib, idx = tmp_path / "lib", tmp_path / "idx"
    copy_clips(shared_data, lib, {"dog_bark": 3, "rain": 3, "rooster": 3})
    build_index(lib, idx, old, FAST)
    assert Searcher(idx).index.d == 1024
    before = [
        [(h.path, round(h.score, 5)) for h in p.hits] for p in Searcher(idx).search(old.encode_text(QUERIES), k=9)
    ]

    service = SearchService(new, idx)  # the upgraded service on the index it finds: answers, same ranking
    served = service.search_batch(QUERIES, [QuerySpec(9, text=q, mode="audio") for q in QUERIES])
    assert [[(h.path, round(h.score, 5)) for h in p.hits] for p in served] == before
    hybrid = service.search_batch(QUERIES, [QuerySpec(9, text=q) for q in QUERIES])  # the old model's words count too
    assert [h.path.split("/")[0] for h in hybrid[0].hits[:3]] == ["dog_bark"] * 3

    report = build_index(lib, idx, new, FAST)  # the next indexing run
    assert report.embedded == 0 and report.files == 9  # every vector came from the converted cache
    s = Searcher(idx)
    assert s.index.d == 384 and s.fingerprint == new.fingerprint
    s.check_model(new.fingerprint)
    after = [[(h.path, round(h.score, 5)) for h in p.hits] for p in s.search(new.encode_text(QUERIES), k=9)]
    assert after == before


def test_an_unrelated_1024_d_index_is_still_refused(models_old_and_new, shared_data, tmp_path) -> None:
    old, new = models_old_and_new
    copy_clips(shared_data, tmp_path / "lib", {"rain": 2})
    build_index(tmp_path / "lib", tmp_path / "idx", load_encoder("aisfx"), FAST)
    with pytest.raises(IndexMismatchError, match="built with model aisfx"):
        SearchService(new, tmp_path / "idx")
