"""Search backends: exact top-k in torch (the GPU path, run here on the CPU) against FAISS's exact Flat search."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from indexer.backends import TorchExactIndex, exact_vectors, search_backend
from indexer.faiss_index import new_index


def clustered(n: int, d: int, seed: int = 0) -> np.ndarray:
    """Unit vectors around 50 centres, like embeddings of a library (many near-duplicates, no exact ties)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((50, d)).astype(np.float32)
    x = centres[rng.integers(0, 50, n)] + 0.3 * rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, faiss.Index]:
    base, queries = clustered(20_000, 384), clustered(64, 384, seed=1)
    flat = faiss.IndexFlatIP(384)
    flat.add(base)
    return base, queries, flat


def test_torch_exact_search_equals_faiss_flat(data) -> None:
    base, queries, flat = data
    want_scores, want_ids = flat.search(queries, 10)
    scores, ids = TorchExactIndex(base, "cpu").search(queries, 10)
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_allclose(scores, want_scores, atol=1e-5)


def test_fp16_as_on_a_gpu_keeps_the_top_ten_up_to_ties(data) -> None:
    base, queries, flat = data
    want_scores, want_ids = flat.search(queries, 10)
    _, ids = TorchExactIndex(base, "cpu", dtype="float16").search(queries, 10)
    agree = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, want_ids, strict=True)])
    assert agree >= 0.97, agree  # fp16 scores differ in the 4th digit: near-ties can swap (0.994 on an H200)


def test_more_results_asked_than_vectors_pads_like_faiss(data) -> None:
    base, queries, _ = data
    small = faiss.IndexFlatIP(384)
    small.add(base[:5])
    want_scores, want_ids = small.search(queries[:2], 8)
    scores, ids = TorchExactIndex(base[:5], "cpu").search(queries[:2], 8)
    np.testing.assert_array_equal(ids, want_ids)  # five hits, then -1
    assert (ids[:, 5:] == -1).all() and np.isneginf(scores[:, 5:]).all()


@pytest.mark.parametrize(
    ("factory", "exact"),
    [("Flat", True), ("IVF16,Flat", True), ("HNSW16", True), ("IVF16,PQ16", False), ("SQ8", False)],
)
def test_exact_vectors_only_where_the_index_keeps_them(data, factory: str, exact: bool) -> None:
    base = data[0][:4000]
    index = new_index(384, factory)
    index.train(base)
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None:
        ivf.set_direct_map_type(faiss.DirectMap.Array)  # as the snapshot writer does
    index.add(base)
    got = exact_vectors(index)
    if exact:
        np.testing.assert_array_equal(got, base)
    else:
        assert got is None


def test_cpu_hosts_keep_the_faiss_index(data) -> None:
    assert search_backend(data[2], "cpu") is data[2]
