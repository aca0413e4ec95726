"""A sharded index (indexer.search.shards) in one process, on real audio with the real lite model: its pages are
exactly the single index's in every mode, on two pages, with filters, ties and no_close_match; the merge of
shard lists equals FAISS's own list (up to which rows of a tie across its cut are kept, which FAISS itself
picks by no rule, and the ranker's exact paging does not depend on). The same split runs in Ray actors under
`serve --ray` (tests/app/test_ray_serve.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import faiss
import numpy as np
import pytest

from audiosearch.indexer import Filters, IndexOptions, QuerySpec, Searcher, build_index
from audiosearch.indexer.errors import IndexMismatchError
from audiosearch.indexer.search.shards import ShardedCandidates, ShardPart, bounds, merge_top
from tests.conftest import copy_clips

CLASSES = {"dog_bark": 3, "rain": 3, "rooster": 2, "sea_waves": 2, "clock_tick": 2}
QUERIES = ["a dog barking", "rain falling", "a rooster crowing", "waves", "clock ticking", "xylophone solo"]


class InProcessShards:
    """The shards of a snapshot as plain objects in this process: the production split and merge, no Ray."""

    def __init__(self, shards: int) -> None:
        self.shards = shards

    def open(self, snapshot: Path) -> ShardedCandidates:
        parts = [ShardPart(snapshot, i, self.shards) for i in range(self.shards)]
        return ShardedCandidates(
            lambda method, q, k: [getattr(p, method)(q, k) for p in parts], [p.info() for p in parts]
        )


def tied_library(shared_data: Path, lib: Path) -> Path:
    """Real clips, and copies of two of them under other names in the same folders (exact audio ties; the
    copies' words tie too)."""
    clips = copy_clips(shared_data, lib, CLASSES)
    for src in (clips[0], clips[3]):
        shutil.copy(src, src.with_name("copy_" + src.name))
    return lib


@pytest.fixture(scope="module")
def index(shared_data, lite_model, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("shards")
    idx = root / "idx"
    build_index(tied_library(shared_data, root / "lib"), idx, lite_model, IndexOptions(workers=0, progress=False))
    return idx


def pages(searcher: Searcher, vectors: np.ndarray, specs: list[QuerySpec]) -> list:
    return [
        (
            p.total,
            p.mode,
            p.min_score,
            p.close_match,
            [(h.file_id, h.path, h.start, h.end, h.evidence) for h in p.hits],
            [h.score for h in p.hits],
        )  # fmt: skip
        for p in searcher.search_many(vectors, specs)
    ]


def assert_same(a: list, b: list) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x[:5] == y[:5]
        np.testing.assert_allclose(x[5], y[5], atol=1e-5, rtol=0)


SPECS = [
    QuerySpec(k, offset, filters, text, mode, min_score)
    for mode in ("hybrid", "audio", "text")
    for k, offset in ((5, 0), (5, 5))
    for filters in (Filters(), Filters(path_prefix="dog_bark/"), Filters(min_duration=4.9))
    for text, min_score in ((None, None), ("q", None), ("q", 0.99))
]


@pytest.mark.parametrize("shards", [1, 2, 3, 5])
def test_sharded_pages_are_the_single_index_pages(index, lite_model, shards) -> None:
    single, sharded = Searcher(index), Searcher(index, mmap=True, shards=InProcessShards(shards))
    vectors = lite_model.encode_text(QUERIES)
    for qi, text in enumerate(QUERIES):
        specs = [QuerySpec(s.k, s.offset, s.filters, s.text and text, s.mode, s.min_score) for s in SPECS]
        vecs = np.repeat(vectors[qi : qi + 1], len(specs), axis=0)
        assert_same(pages(sharded, vecs, specs), pages(single, vecs, specs))
    # a query by example that is a stored window: its copy ties with it exactly, on whichever shards they are
    clip = next(c for c in range(1, 40) if single.clip(c) and single.clip(c).path.startswith("dog_bark/copy_"))
    q = single.window_vectors(clip)[:1]
    for k, offset in ((3, 0), (3, 3), (2, 1)):
        a, b = single.search(q, k, offset)[0], sharded.search(q, k, offset)[0]
        assert [(h.file_id, h.start) for h in a.hits] == [(h.file_id, h.start) for h in b.hits]
    top = single.search(q, 2)[0].hits
    assert top[0].score == top[1].score  # the tie is there
    assert single.similar(clip, 4, 1) == sharded.similar(clip, 4, 1)


def test_each_shard_holds_its_share_only(index) -> None:
    n = Searcher(index).index.ntotal
    parts = [ShardPart(Searcher(index).snapshot, i, 3) for i in range(3)]
    assert [p.info()["windows"] for p in parts] == [[*bounds(n, i, 3), n] for i in range(3)]
    assert [p.info()["bytes"] for p in parts] == [(hi - lo) * 384 * 4 for lo, hi in (bounds(n, i, 3) for i in range(3))]
    assert sum(p.words.ntotal for p in parts) == parts[0].words_total > 0
    with pytest.raises(IndexMismatchError, match="exactly once"):  # a shard of another split is refused
        ShardedCandidates(lambda *a: [], [parts[0].info(), ShardPart(parts[0].snapshot, 1, 2).info()])


def test_merge_equals_faiss_on_ties() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 16)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    x[rng.integers(0, 200, 60)] = x[rng.integers(0, 200, 60)]  # many exact copies, spread over the shards
    x[100:110] = x[3]
    index = faiss.IndexFlatIP(16)
    index.add(x)
    q = np.concatenate([x[[3, 7, 50]], rng.standard_normal((2, 16)).astype(np.float32)])
    for m in (2, 3, 7):
        parts = []
        for i in range(m):
            lo, hi = bounds(len(x), i, m)
            part = faiss.IndexFlatIP(16)
            part.add(x[lo:hi])
            parts.append(lo)
            parts[-1] = (part, lo)
        for k in (1, 4, 11, 30):
            found = []
            for part, lo in parts:
                s, r = part.search(q, k)
                found.append((s, np.where(r >= 0, r + lo, -1)))
            scores, rows = merge_top(found, k)
            want_s, want_r = index.search(q, k)
            np.testing.assert_array_equal(scores, want_s)
            # The same rows in the same order, except which rows of a tie across the cut are kept: FAISS's heap
            # does not pick them by a rule (lowest rows at one k, not at another); any of them is right.
            last = want_s[:, -1:]
            np.testing.assert_array_equal(np.where(want_s > last, rows, -2), np.where(want_s > last, want_r, -2))
            all_s, all_r = index.search(q, len(x))
            for i in range(len(q)):
                tied = set(all_r[i][all_s[i] == last[i, 0]].tolist())
                assert set(rows[i][want_s[i] == last[i]].tolist()) <= tied
