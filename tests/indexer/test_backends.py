"""Search backends against FAISS's exact Flat search: the blocked parallel CPU scan, and exact top-k in torch (the
GPU path, run here on the CPU)."""

from __future__ import annotations

import gc
import sqlite3

import faiss
import numpy as np
import pytest

from audiosearch.indexer.faiss_index import new_index
from audiosearch.indexer.search.backends import (
    BlockedFlatScan,
    TorchExactIndex,
    cpu_backend,
    flat_storage,
    holds_exact,
    search_backend,
)
from audiosearch.indexer.search.fusion import SCORE_EPS
from audiosearch.indexer.words.extract import FileWords
from audiosearch.indexer.words.store import WORD_VECTORS, WordsReader, WordsWriter


def _cuda() -> bool:
    try:
        import torch
    except ImportError:  # the slim runtime: no torch, no GPU search
        return False
    return torch.cuda.is_available()


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


def test_fp16_would_swap_near_ties_which_is_why_the_gpu_keeps_fp32(data) -> None:
    base, queries, flat = data
    want_scores, want_ids = flat.search(queries, 10)
    scores, ids = TorchExactIndex(base, "cpu", dtype="float16").search(queries, 10)
    agree = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, want_ids, strict=True)])
    assert agree >= 0.97, agree  # near-ties can swap (0.991 and 0.994 of the top 10 on two H200s)
    assert np.abs(scores - want_scores).max() > 10 * SCORE_EPS  # far beyond what the hybrid ranker's pages allow


@pytest.mark.skipif(not _cuda(), reason="no CUDA GPU here (a GPU host runs it: README, 'On a GPU')")
def test_on_the_gpu_ids_equal_faiss_and_scores_agree_to_the_rankers_eps(data) -> None:
    base, queries, flat = data
    want_scores, want_ids = flat.search(queries, 10)
    backend = search_backend(flat, "cuda")
    if not hasattr(faiss, "StandardGpuResources"):  # faiss-cpu: the torch path
        assert isinstance(backend, TorchExactIndex) and backend.matrix.dtype == backend.torch.float32
    for batch in (1, 8, 64):  # one GEMV and GEMMs: cuBLAS picks other kernels (and sums) per shape
        scores, ids = backend.search(queries[:batch], 10)
        np.testing.assert_array_equal(ids, want_ids[:batch])
        assert np.abs(scores - want_scores[:batch]).max() <= SCORE_EPS


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
    [
        ("Flat", True),
        ("IVF16,Flat", True),
        ("HNSW16", True),
        pytest.param("IVF16,PQ16", False, marks=pytest.mark.slow),
        ("SQ8", False),
    ],
)
def test_holds_exact_only_where_the_index_keeps_the_vectors(data, factory: str, exact: bool) -> None:
    base = data[0][:4000]
    index = new_index(384, factory)
    index.train(base)
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None:
        ivf.set_direct_map_type(faiss.DirectMap.Array)  # as the snapshot writer does
    index.add(base)
    assert holds_exact(index) is exact
    if exact:
        np.testing.assert_array_equal(index.reconstruct_n(0, index.ntotal), base)
    else:
        if not hasattr(faiss, "StandardGpuResources"):  # codes: searched by FAISS-CPU whatever the device
            assert search_backend(index, "cuda") is index


@pytest.mark.parametrize(("nq", "k", "parts"), [(1, 10, 2), (7, 256, 2), (64, 10, 3), (3, 5000, 2)])
def test_blocked_scan_equals_faiss_flat(data, nq: int, k: int, parts: int) -> None:
    _, queries, flat = data
    want_scores, want_ids = flat.search(queries[:nq], k)
    scores, ids = BlockedFlatScan(flat, parts).search(queries[:nq], k)  # k 5000: FAISS's own scan
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_allclose(scores, want_scores, atol=1e-6)  # summation order differs in the last bit


def test_blocked_scan_reads_a_memory_mapped_index_and_pads_like_faiss(data, tmp_path) -> None:
    base, queries, flat = data
    faiss.write_index(flat, str(tmp_path / "flat.faiss"))
    mapped = faiss.read_index(str(tmp_path / "flat.faiss"), faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY)
    np.testing.assert_array_equal(BlockedFlatScan(mapped).search(queries, 10)[1], flat.search(queries, 10)[1])
    small = faiss.IndexFlatIP(384)
    small.add(base[:5])
    want_scores, want_ids = small.search(queries[:2], 8)
    scores, ids = BlockedFlatScan(small, 2).search(queries[:2], 8)
    np.testing.assert_array_equal(ids, want_ids)  # five hits, then -1
    np.testing.assert_allclose(scores, want_scores, atol=1e-6)


def test_the_scan_keeps_its_index_alive_and_never_writes_to_it(data) -> None:
    base, queries, flat = data
    want = flat.search(queries, 10)[1]

    def scan_only() -> BlockedFlatScan:
        own = faiss.IndexFlatIP(384)
        own.add(base)
        scan = cpu_backend(own)  # the only reference to `own` left is the scan's
        assert isinstance(scan, BlockedFlatScan)
        return scan

    scan = scan_only()
    gc.collect()
    np.testing.assert_array_equal(scan.search(queries, 10)[1], want)
    assert not flat_storage(flat).flags.writeable


def test_cpu_backend_scans_large_flat_indexes_and_leaves_the_rest_to_faiss(data) -> None:
    base, _, flat = data
    assert isinstance(search_backend(flat, "cpu"), BlockedFlatScan)  # 20,000 vectors
    small = faiss.IndexFlatIP(384)
    small.add(base[: BlockedFlatScan.MIN_ROWS - 1])
    assert cpu_backend(small) is small
    hnsw = new_index(384, "HNSW16")
    hnsw.add(base)
    assert cpu_backend(hnsw) is hnsw
    l2 = faiss.IndexFlatL2(384)
    l2.add(base)
    assert cpu_backend(l2) is l2  # the scan ranks by inner product only


def test_word_vectors_of_a_large_library_are_scanned_and_named_by_file_id(data, tmp_path) -> None:
    base, queries, _ = data
    db = sqlite3.connect(":memory:")
    writer = WordsWriter(db, tmp_path, 384)
    file_ids = [3 * i + 7 for i in range(len(base))]  # not row numbers: the reader must map them back
    writer.add([(fid, FileWords(("dog", "bark", str(fid)), ())) for fid in file_ids], base)
    writer.finish()
    query = lambda sql, args: db.execute(sql, args).fetchall()  # noqa: E731
    reader = WordsReader(tmp_path, query, lambda path: faiss.read_index(str(path)))
    assert isinstance(reader._scan, BlockedFlatScan)  # 20,000 files with words
    want_scores, want_ids = faiss.read_index(str(tmp_path / WORD_VECTORS)).search(queries, 10)
    scores, ids = reader.vector_search(queries, 10)
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_allclose(scores, want_scores, atol=1e-6)
