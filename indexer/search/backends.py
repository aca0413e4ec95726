"""Where a loaded index is searched: FAISS on the CPU (default), FAISS on the GPU, or exact top-k in torch on the GPU.

Chosen once per loaded snapshot from the search device. On a GPU: faiss-gpu when it is importable and the
index type runs there (Flat, IVF); otherwise, for indexes that hold their vectors exactly (Flat, IVF-Flat,
HNSW-Flat), one fp32 matrix product and a top-k with torch (exact search, so never worse than the index it
replaces); PQ/SQ codes stay on FAISS-CPU, and so does an index whose vectors do not fit in the GPU's free memory
or any index while torch runs fp32 matmuls as TF32. fp32, not fp16: the hybrid ranker mixes these scores with
ones it recomputes from the stored vectors and pages by them, so the two must agree to its SCORE_EPS (fp16
scores differ in the 4th digit). On the CPU a large Flat index is scanned block by block over its own storage,
in parallel parts (BlockedFlatScan); every other index is searched by FAISS itself. An index of codes whose
snapshot stores the full vectors beside it (`--faiss auto`'s compressed kind) is wrapped in RerankedSearch by
search.audio.AudioIndex: its candidates re-scored exactly, on the CPU.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from typing import Any, Protocol

import faiss
import numpy as np

from audiosearch.indexer.faiss_index import RERANK_FACTOR, holds_exact

__all__ = ["BlockedFlatScan", "RerankedSearch", "TorchExactIndex", "holds_exact", "search_backend"]
log = logging.getLogger(__name__)


class SearchBackend(Protocol):
    ntotal: int
    d: int

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(Q, d) float32 -> scores (Q, k) float32 and ids (Q, k) int64, best first; -1 ids where fewer exist."""
        ...


class TorchExactIndex:
    """Exact inner-product top-k over a (N, d) matrix held by torch on `device` (fp32 unless `dtype` says)."""

    def __init__(self, vectors: np.ndarray, device: str = "cuda", dtype: str = "float32") -> None:
        import torch

        self.torch, self.device, self.dtype = torch, torch.device(device), getattr(torch, dtype)
        self.ntotal, self.d = vectors.shape
        self.matrix = torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32)).to(self.device, self.dtype)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        torch = self.torch
        k_real = min(k, self.ntotal)
        with torch.inference_mode():
            q = torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32)).to(self.device, self.dtype)
            scores, ids = (q @ self.matrix.T).topk(k_real, dim=1)  # (Q, k)
            scores, ids = scores.float().cpu().numpy(), ids.cpu().numpy().astype(np.int64)
        if k_real < k:  # FAISS pads with -1 ids; so does this, so callers treat both alike
            scores = np.pad(scores, ((0, 0), (0, k - k_real)), constant_values=-np.inf)
            ids = np.pad(ids, ((0, 0), (0, k - k_real)), constant_values=-1)
        return scores, ids


def inner_flat(index: faiss.Index) -> faiss.IndexFlat | None:
    """The Flat index that holds the vectors: the index itself or the one inside an IDMap; None otherwise."""
    inner = faiss.downcast_index(index)
    if isinstance(inner, faiss.IndexIDMap | faiss.IndexIDMap2):
        inner = faiss.downcast_index(inner.index)
    return inner if isinstance(inner, faiss.IndexFlat) else None


def flat_storage(index: faiss.Index) -> np.ndarray | None:
    """(ntotal, d) read-only view of a Flat index's own float32 storage (inside an IDMap too; memory-mapped ones
    as well), or None for another layout. A view, not a copy: valid only while `index` is alive."""
    inner = inner_flat(index)
    if inner is None or inner.ntotal == 0:
        return None
    view = faiss.rev_swig_ptr(inner.get_xb(), inner.ntotal * inner.d).reshape(inner.ntotal, inner.d)
    view.flags.writeable = False  # memory-mapped storage is read-only: a write would kill the process
    return view


class BlockedFlatScan:
    """Exact top-k over a Flat index's own float32 storage (no copy; memory-mapped indexes too), read in blocks
    that stay in cache for every query of a batch, the parts of the matrix scanned side by side.

    Why not index.search: below 20 queries FAISS reads the whole matrix once per query (a batch of 8 costs 8
    scans; its BLAS path, forced, was slower still), in one thread. Measured on 2 cores, 100k x 384, k 50:
    1 query 10.6 -> 5.8 ms, 8 queries 87 -> 19 ms. Hand-written because FAISS has no blocked multi-query scan
    below its BLAS threshold; the merging is FAISS's own ResultHeap, and faiss.knn releases the GIL."""

    BLOCK_ROWS = 2048  # 3 MB of 384-d vectors: stays in L2/L3 while every query of the batch reads it
    MIN_ROWS = 16_384  # below this a scan costs under 2 ms and FAISS's own search is as fast
    MAX_K = 256  # deeper: every block would fill a heap of k mostly empty slots; FAISS's own scan is faster

    @staticmethod
    def fits(index: faiss.Index) -> bool:
        flat = inner_flat(index)
        return (
            flat is not None
            and type(flat) in (faiss.IndexFlatIP, faiss.IndexFlat)
            and flat.metric_type == faiss.METRIC_INNER_PRODUCT
            and flat.ntotal >= BlockedFlatScan.MIN_ROWS
        )

    def __init__(self, index: faiss.Index, parts: int | None = None) -> None:
        """`index`: a Flat index or an IDMap over one (ids are then rows: the caller maps them). It is kept here:
        the scan reads its memory. `parts` scanned side by side: by default one per core, at most two (memory
        bandwidth, not compute, bounds a scan)."""
        parts = parts or min(2, os.cpu_count() or 1)
        self.owner, self.flat = index, inner_flat(index)
        if self.flat is None or self.flat.metric_type != faiss.METRIC_INNER_PRODUCT:
            raise ValueError("BlockedFlatScan needs an inner-product Flat index")
        self.ntotal, self.d = self.flat.ntotal, self.flat.d
        self.matrix = flat_storage(index)
        bounds = np.linspace(0, self.ntotal, max(1, parts) + 1).astype(int)
        self.parts = list(zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if k > self.MAX_K or self.matrix is None:
            return self.flat.search(queries, k)
        rest = [_part_pool(len(self.parts) - 1).submit(self._scan, queries, k, *p) for p in self.parts[1:]]
        parts = [self._scan(queries, k, *self.parts[0])]  # the calling thread scans the first part itself
        parts += [future.result() for future in rest]
        heap = faiss.ResultHeap(len(queries), k, keep_max=True)
        for part in parts:
            heap.add_result(part.D, part.I)
        heap.finalize()
        return heap.D, heap.I

    def _scan(self, queries: np.ndarray, k: int, lo: int, hi: int) -> faiss.ResultHeap:
        heap = faiss.ResultHeap(len(queries), k, keep_max=True)
        for start in range(lo, hi, self.BLOCK_ROWS):
            scores, ids = faiss.knn(
                queries, self.matrix[start : min(hi, start + self.BLOCK_ROWS)], k, faiss.METRIC_INNER_PRODUCT
            )
            heap.add_result(scores, np.where(ids >= 0, ids + start, -1))
        heap.finalize()  # sorted: no longer a heap, so the caller merges the parts into a fresh one
        return heap


class RerankedSearch:
    """A compressed index's candidates re-scored exactly: `factor` x k candidates from the codes, their inner
    products recomputed from the full vectors (vectors.npy, read row by row: indexer.row_file), the best k kept.
    Scores are exact; recall is what the candidates hold (docs/performance.md)."""

    def __init__(self, backend: Any, vectors: np.ndarray, factor: int = RERANK_FACTOR) -> None:
        self.backend, self.vectors, self.factor = backend, vectors, factor
        self.ntotal, self.d = vectors.shape

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        _, cand = self.backend.search(queries, min(self.ntotal, k * self.factor))
        scores = np.full((len(queries), k), -np.inf, np.float32)
        ids = np.full((len(queries), k), -1, np.int64)
        for row, (q, c) in enumerate(zip(queries, cand, strict=True)):
            c = np.sort(c[c >= 0])  # ascending: the mapped file is read front to back
            exact = np.einsum("ij,j->i", self.vectors[c], q)  # as HybridRanker._audio scores stored windows
            best = np.lexsort((c, -exact))[:k]  # ties by id, as a flat scan
            scores[row, : len(best)], ids[row, : len(best)] = exact[best], c[best]
        return scores, ids


@cache
def _part_pool(workers: int) -> ThreadPoolExecutor:
    """Shared by every loaded snapshot (a reload must not leak threads); FAISS single-threaded inside each."""
    return ThreadPoolExecutor(max(1, workers), "flat-scan", initializer=faiss.omp_set_num_threads, initargs=(1,))


def cpu_backend(index: faiss.Index, parts: int | None = None) -> Any:
    """BlockedFlatScan for a plain inner-product Flat index of MIN_ROWS or more, else the index itself."""
    if isinstance(faiss.downcast_index(index), faiss.IndexFlat) and BlockedFlatScan.fits(index):
        return BlockedFlatScan(index, parts)
    return index


def search_backend(index: faiss.Index, device: str = "cpu") -> Any:
    """On the CPU: a blocked parallel scan for large Flat indexes, else the index itself; on 'cuda' the fastest
    backend that gives the same results (see above)."""
    if device != "cuda":
        return cpu_backend(index)
    if hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0 and _gpu_faiss_type(index):
        log.info("search: FAISS on %d GPU(s)", faiss.get_num_gpus())
        return faiss.index_cpu_to_all_gpus(index)
    why = _no_torch_gpu_path(index)
    if why:
        log.warning("search: %s; searching on the CPU", why)
        return cpu_backend(index)
    log.info("search: exact top-k in torch on the GPU (%d x %d vectors, fp32)", index.ntotal, index.d)
    return TorchExactIndex(index.reconstruct_n(0, index.ntotal), "cuda")  # _no_torch_gpu_path checked it holds them


def _no_torch_gpu_path(index: faiss.Index) -> str | None:
    """Why the torch GPU path cannot take this index (None: it can). Checked before any vector is copied."""
    import torch

    if not holds_exact(index) or index.ntotal == 0:
        return "this FAISS index type has no GPU path here"
    if torch.get_float32_matmul_precision() != "highest":  # TF32 scores are off by ~1e-3: pages would not be exact
        return "torch's fp32 matmul precision is not 'highest' (TF32)"
    # Memory torch holds cached (a replaced snapshot's matrix, during a reload) is free to it too.
    free = torch.cuda.mem_get_info()[0] + torch.cuda.memory_reserved() - torch.cuda.memory_allocated()
    nbytes = index.ntotal * index.d * 4
    if nbytes > 0.75 * free:  # room for a batch's scores and the query model beside the matrix
        return f"{nbytes >> 20} MB of vectors do not fit in the GPU's free memory ({free >> 20} MB)"
    return None


def _gpu_faiss_type(index: faiss.Index) -> bool:
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None and isinstance(faiss.downcast_index(ivf), faiss.IndexIVFFastScan):
        return False  # faiss-gpu has no fast-scan codes (the auto compressed index): it stays on the CPU
    return isinstance(faiss.downcast_index(index), faiss.IndexFlat) or ivf is not None
