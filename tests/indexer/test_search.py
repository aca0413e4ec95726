"""Ranking (indexer/search/searcher.py) on known vectors: the best window per file, paging, filters, totals, the wider
fetch when filters or one long file use up the candidates, model checks, and approximate indexes' recall."""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np
import pytest

from audiosearch.indexer.errors import IndexMismatchError
from audiosearch.indexer.faiss_index import train_if_needed
from audiosearch.indexer.search.searcher import Filters, QuerySpec, Searcher
from audiosearch.indexer.store import SnapshotWriter
from tests.indexer.snapshots import WINDOW_S, File, manifest, unit, write_snapshot

DIM = 16


def _random_files(n: int = 30, seed: int = 0) -> list[File]:
    rng = np.random.default_rng(seed)
    files = []
    for i in range(n):
        v = rng.standard_normal((int(rng.integers(1, 6)), DIM)).astype(np.float32)
        files.append(File(f"{'ab'[i % 2]}/{i:02d}.wav", v / np.linalg.norm(v, axis=1, keepdims=True)))
    return files


def _expected(files: list[File], query: np.ndarray, prefix: str = "") -> list[tuple[str, float, float]]:
    """(path, best window's score, its start) per file, best first: the ranking computed without FAISS."""
    out = []
    for f in files:
        if f.path.startswith(prefix):
            scores = f.vectors @ query
            out.append((f.path, float(scores.max()), WINDOW_S * int(scores.argmax())))
    return sorted(out, key=lambda r: -r[1])


def _same_ranking(hits, want: list[tuple[str, float, float]]) -> None:
    assert [(h.path, h.start) for h in hits] == [(p, start) for p, _, start in want]
    np.testing.assert_allclose([h.score for h in hits], [score for _, score, _ in want], atol=1e-5)


@pytest.fixture(scope="module")
def ranked(tmp_path_factory) -> tuple[Searcher, list[File], np.ndarray]:
    files, index_dir = _random_files(), tmp_path_factory.mktemp("search")
    write_snapshot(index_dir, files)
    queries = unit(*np.random.default_rng(1).standard_normal((5, DIM)).tolist(), dim=DIM)
    return Searcher(index_dir), files, queries


def test_best_window_per_file_ranks_files(ranked) -> None:
    searcher, files, queries = ranked
    pages = searcher.search(queries, k=10)
    for page, q in zip(pages, queries, strict=True):
        _same_ranking(page.hits, _expected(files, q)[:10])
        assert page.total == 30 and len({h.file_id for h in page.hits}) == 10
    hit = pages[0].hits[0]
    f = next(f for f in files if f.path == hit.path)
    assert hit.end == min(hit.start + WINDOW_S, f.duration) and hit.duration == f.duration


def test_pages_follow_one_another(ranked) -> None:
    searcher, files, queries = ranked
    whole = searcher.search(queries[:1], k=12)[0].hits
    pages = [searcher.search(queries[:1], k=4, offset=o)[0].hits for o in (0, 4, 8)]
    assert [h.path for p in pages for h in p] == [h.path for h in whole]
    everything = searcher.search(queries[:1], k=100)[0].hits  # more than there are files: all of them
    assert [h.path for h in everything] == [p for p, _, _ in _expected(files, queries[0])]
    last = searcher.search(queries[:1], k=10, offset=28)[0]
    assert len(last.hits) == 2 and last.total == 30
    assert searcher.search(queries[:1], k=10, offset=30)[0].hits == []


def test_filters_restrict_hits_and_totals(ranked) -> None:
    searcher, files, queries = ranked
    page = searcher.search(queries[1:2], k=5, filters=Filters(path_prefix="b/"))[0]
    _same_ranking(page.hits, _expected(files, queries[1], "b/")[:5])
    assert page.total == 15
    short = searcher.search(queries[1:2], k=50, filters=Filters(max_duration=1.5))[0]
    assert short.total == sum(len(f.vectors) == 1 for f in files) == len(short.hits)
    assert {h.duration for h in short.hits} == {1.5}
    none = searcher.search(queries[1:2], k=5, filters=Filters(path_prefix="c/"))[0]
    assert (none.hits, none.total) == ([], 0)


def test_queries_of_several_requests_in_one_call_get_their_own_pages(ranked) -> None:
    """search_many (the service's batcher): each query its own k, offset and filters, as if asked alone."""
    searcher, _, queries = ranked
    specs = [
        QuerySpec(3),
        QuerySpec(5, 2, Filters(path_prefix="b/")),
        QuerySpec(30, 25),
        QuerySpec(2, 0, Filters(path_prefix="c/")),
        QuerySpec(4, 1, Filters(max_duration=3.5)),
    ]
    pages = searcher.search_many(queries, specs)
    for q, spec, page in zip(queries, specs, pages, strict=True):
        alone = searcher.search(q[None], spec.k, spec.offset, spec.filters)[0]
        assert page.total == alone.total and page.hits == alone.hits
    assert [len(p.hits) for p in pages] == [3, 5, 5, 0, 4]


def test_candidates_used_up_by_other_files_or_one_long_file_are_fetched_again(tmp_path: Path) -> None:
    q = unit([1, 0], dim=DIM)[0]
    near = [File(f"noise/{i:03d}.wav", unit([1, 0.05 * (i + 1)], dim=DIM)) for i in range(80)]
    long_file = File("long.wav", unit(*[[1, 0.001 * i] for i in range(100)], dim=DIM))
    target = File("target/x.wav", unit([0.1, 1], dim=DIM))
    write_snapshot(tmp_path, [long_file, *near, target])
    searcher = Searcher(tmp_path)
    page = searcher.search(q[None], k=1, filters=Filters(path_prefix="target/"))[0]
    assert [(h.path, round(h.score, 4)) for h in page.hits] == [
        ("target/x.wav", round(float(target.vectors[0] @ q), 4))
    ]
    top = searcher.search(q[None], k=3)[0].hits  # the first 16 candidates are all windows of long.wav
    assert [h.path for h in top] == ["long.wav", "noise/000.wav", "noise/001.wav"]
    assert top[0].start == 0.0 and top[0].score == pytest.approx(1.0)


def test_queries_of_another_width_are_refused(ranked) -> None:
    searcher = ranked[0]
    for bad in [np.ones((1, 8), np.float32), np.ones(DIM, np.float32), np.ones((1, 1, DIM), np.float32)]:
        with pytest.raises(IndexMismatchError, match=f"the index holds {DIM}-d vectors"):
            searcher.search(bad)


def test_queries_from_another_model_are_refused(ranked) -> None:
    searcher = ranked[0]
    searcher.check_model("test-model-0000")  # its own model
    with pytest.raises(IndexMismatchError, match="built with model test-model-0000; queries come from other-1"):
        searcher.check_model("other-1")
    with pytest.raises(IndexMismatchError):  # a superseded entry must name this index's width too
        searcher.check_model("other-1", [{"fingerprint": "test-model-0000", "dim": 2 * DIM}])


def test_an_index_of_padded_vectors_answers_the_narrower_model_that_supersedes_it(tmp_path: Path) -> None:
    files = _random_files(12, seed=3)
    narrow = [f.vectors[:, :8] / np.linalg.norm(f.vectors[:, :8], axis=1, keepdims=True) for f in files]
    padded = [File(f.path, np.pad(v, ((0, 0), (0, DIM - 8)))) for f, v in zip(files, narrow, strict=True)]
    write_snapshot(tmp_path, padded, fingerprint="old-padded")
    searcher = Searcher(tmp_path)
    query = unit([0.3, -1, 0.2, 0.5, 0, 0.1], dim=8)
    with pytest.raises(IndexMismatchError):  # not before the model has shown it supersedes the index
        searcher.search(query)
    searcher.check_model("new-narrow", [{"fingerprint": "old-padded", "dim": DIM}])
    page = searcher.search(query, k=5)[0]
    want = _expected([File(f.path, v) for f, v in zip(files, narrow, strict=True)], query[0])[:5]
    _same_ranking(page.hits, want)


# -- approximate indexes against exact search ---------------------------------------------------------------


def _clustered(n: int, dim: int = 32, clusters: int = 100, noise: float = 0.2, seed: int = 0) -> np.ndarray:
    """Unit vectors around random centres (as bench/faiss.py, noisier so that the settings matter at 6k)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    x = centres[rng.integers(0, clusters, n)] + noise * rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _one_window_files(index_dir: Path, base: np.ndarray, factory: str) -> Searcher:
    writer = SnapshotWriter(index_dir, base.shape[1], factory)
    train_if_needed(writer.index, base, factory)
    writer.add_files([(i + 1, (f"{i}.wav", 1, 1, "sha", 1.0, 16000, 1), [0.0], [1.0]) for i in range(len(base))])
    writer.add_vectors(base)
    writer.commit(manifest(dim=base.shape[1]))
    return Searcher(index_dir)  # read back as the service does: audiosearch.indexer.store.tune_for_search applied


def _recall(searcher: Searcher, queries: np.ndarray, truth: np.ndarray) -> float:
    pages = searcher.search(queries, k=10)
    return float(
        np.mean([len({h.file_id - 1 for h in p.hits} & set(t)) / 10 for p, t in zip(pages, truth, strict=True)])
    )


@pytest.mark.parametrize(
    ("factory", "floor", "faiss_default", "service_setting"),
    [
        ("Flat", 1.0, None, None),
        ("HNSW32", 0.98, "efSearch=16", ("efSearch", 128)),  # measured 1.000 (FAISS's efSearch 16: 0.976)
        ("IVF64,Flat", 0.85, "nprobe=1", ("nprobe", 8)),  # measured 0.936 (FAISS's nprobe 1: 0.73)
    ],
)
def test_recall_at_10_against_exact_search(tmp_path: Path, factory, floor, faiss_default, service_setting) -> None:
    data = _clustered(6200)
    base, queries = data[:6000], data[6000:]
    truth = faiss.knn(queries, base, 10, metric=faiss.METRIC_INNER_PRODUCT)[1]
    searcher = _one_window_files(tmp_path, base, factory)
    recall = _recall(searcher, queries, truth)
    assert recall >= floor, f"{factory}: recall@10 {recall:.3f} below {floor}"
    if service_setting is None:  # exact: the same scores as numpy's
        hits = searcher.search(queries[:1], k=10)[0].hits
        np.testing.assert_allclose([h.score for h in hits], np.sort(base @ queries[0])[::-1][:10], atol=1e-5)
        return
    name, value = service_setting
    ivf = faiss.try_extract_index_ivf(searcher.index)
    knobs = ivf if ivf is not None else faiss.downcast_index(searcher.index).hnsw
    assert getattr(knobs, name) == value
    faiss.ParameterSpace().set_index_parameters(searcher.index, faiss_default)
    assert _recall(searcher, queries, truth) < recall  # the service's settings are what buys the recall
