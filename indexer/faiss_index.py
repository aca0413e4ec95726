"""The FAISS side of a snapshot: which index `--faiss auto` picks, which index a factory string makes, how it is
trained, read (memory-mapped on request) and tuned for search. audiosearch.indexer.store uses these to write and
read snapshots.

`--faiss auto` (choose_index), by the number of windows N and the memory the index may use (IndexPolicy):
  Flat      N <= flat_max_windows (default 250,000: an exact scan of 250k lite vectors, 384-d, takes ~15 ms a
            query on 2 cores; search.backends.BlockedFlatScan), exact;
  IVF{nlist},PQ{d/2}x4fsr + exact re-ranking  beyond: 4-bit fast-scan PQ codes of the residuals (d/4 bytes a
            window: 96 B for lite's 384-d vectors, 1.5 kB as fp32), ids and the id map (16 B) in
            RAM, the full fp32 vectors beside them in vectors.npy, on disk; each search takes RERANK_FACTOR
            times the candidates from the codes and re-scores them exactly from the rows it reads there
            (search.backends.RerankedSearch), so scores are exact and only recall is approximate.
A library whose compressed index does not fit memory_bytes either is refused (IndexBuildError, one line).
HNSW32 is not chosen: on text queries it kept 0.906 of the exact top 10 at 100k windows where the re-ranked
codes kept 0.999, with more RAM (docs/performance.md, bench.scale); `--faiss HNSW32` still builds it.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from audiosearch.indexer.errors import IndexBuildError, IndexCorruptError

log = logging.getLogger(__name__)

AUTO = "auto"
FLAT_MAX_WINDOWS = 250_000
MEMORY_BYTES = 8 << 30  # 8 GiB
HNSW_M = 32
COMPRESSED_NPROBE_SHARE = 4  # the compressed index searches 1/4 of its lists,
COMPRESSED_NPROBE_MAX = 256  # at most 256: past it recall@10 gains < 0.003 at 1M and 10M windows, the scan grows
RERANK_FACTOR = 8  # candidates taken from compressed codes per result wanted, re-scored exactly
TRAIN_MIN, TRAIN_PER_LIST = 200_000, 64  # windows an index is trained on (training_size)


@dataclass(frozen=True)
class IndexPolicy:
    """What `--faiss auto` may use: exact Flat up to flat_max_windows, then the best index whose RAM fits
    memory_bytes (AUDIOSEARCH_INDEX_FLAT_MAX_WINDOWS, AUDIOSEARCH_INDEX_MEMORY / --memory-budget)."""

    flat_max_windows: int = FLAT_MAX_WINDOWS
    memory_bytes: int = MEMORY_BYTES


@dataclass(frozen=True)
class IndexChoice:
    factory: str
    auto: bool
    windows: int
    reason: str
    ram_bytes: int  # the estimate the choice was made on (what the index keeps in RAM)

    def manifest(self) -> dict:
        """The manifest's `faiss_choice` (its `faiss` is the factory)."""
        return {"auto": self.auto, "windows": self.windows, "reason": self.reason, "ram_bytes": self.ram_bytes}


def ivf_nlist(windows: int) -> int:
    """IVF lists: about 4 sqrt(N), at least 39 training vectors per list (FAISS's minimum), a power of two."""
    target = max(4.0, min(4 * math.sqrt(windows), windows / 39))
    return 2 ** int(math.log2(target))


def pq_subquantizers(dim: int) -> int:
    """4-bit fast-scan PQ: one sub-quantizer per 2 dimensions (d/4 bytes a window), even and dividing d. Fewer
    (d/4 sub-quantizers) left lite-like vectors at 0.91 recall@10 after re-ranking 10x (docs/performance.md)."""
    m = dim // 2
    while m > 2 and (dim % m or m % 2):
        m -= 1
    return max(2, m)


def estimate_ram(factory_kind: str, windows: int, dim: int) -> int:
    """Bytes an index keeps in RAM (vectors, codes, graph, ids), within a few percent."""
    if factory_kind == "Flat":
        return windows * dim * 4
    if factory_kind == "HNSW":
        # fp32 vectors, 2M level-0 links of 4 bytes, ~1/M of the windows on upper levels, level and offset tables
        return int(windows * (dim * 4 + 2 * HNSW_M * 4 * (1 + 1 / HNSW_M) + 12))
    nlist = ivf_nlist(windows)  # IVF-PQ fast-scan: codes, 8-byte ids and direct map, the coarse centroids
    return windows * (pq_subquantizers(dim) // 2 + 16) + nlist * dim * 4


def compressed_factory(windows: int, dim: int) -> str:
    return f"IVF{ivf_nlist(windows)},PQ{pq_subquantizers(dim)}x4fsr"


def choose_index(factory: str, windows: int, dim: int, policy: IndexPolicy | None = None) -> IndexChoice:
    """The index a snapshot of `windows` vectors gets: `factory` itself unless it is "auto" (see the module)."""
    policy = policy or IndexPolicy()
    if factory != AUTO:
        return IndexChoice(factory, False, windows, "--faiss given", 0)
    budget = policy.memory_bytes
    flat = estimate_ram("Flat", windows, dim)
    if windows <= policy.flat_max_windows and flat <= budget:
        why = f"{windows} windows <= {policy.flat_max_windows} (flat_max_windows): exact search is fast enough"
        return IndexChoice("Flat", True, windows, why, flat)
    ivf = estimate_ram("IVF", windows, dim)
    if ivf <= budget and windows >= 256:
        over = "flat_max_windows" if windows > policy.flat_max_windows else f"Flat needs {_gb(flat)}"
        why = (
            f"{windows} windows, past Flat ({over}); compressed codes need {_gb(ivf)} <= memory {_gb(budget)}, "
            "full vectors on disk for exact re-ranking"
        )
        return IndexChoice(compressed_factory(windows, dim), True, windows, why, ivf)
    raise IndexBuildError(
        f"{windows} windows do not fit the index memory of {_gb(budget)}: even compressed codes need {_gb(ivf)}; "
        "raise --memory-budget (AUDIOSEARCH_INDEX_MEMORY)"
    )


def _gb(n: int) -> str:
    return f"{n / 1e9:.3g} GB" if n >= 1e8 else f"{n / 1e6:.3g} MB"


def holds_exact(index: faiss.Index) -> bool:
    """Whether the index keeps its vectors exactly (Flat, IVF-Flat, HNSW-Flat), not as codes."""
    inner = faiss.downcast_index(index)
    ivf = faiss.try_extract_index_ivf(index)
    if isinstance(inner, faiss.IndexFlat | faiss.IndexHNSWFlat):
        return True
    return ivf is not None and isinstance(faiss.downcast_index(ivf), faiss.IndexIVFFlat)


def new_index(dim: int, factory: str) -> faiss.Index:
    try:
        index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as err:
        raise IndexBuildError(f"invalid FAISS factory {factory!r}: {str(err).splitlines()[0]}") from None
    # try_extract_index_ivf returns the IndexIVF base class; without the downcast the check below never
    # matched and every PQ index spent about a minute on polysemous training.
    ivf = faiss.try_extract_index_ivf(index)
    ivf = faiss.downcast_index(ivf) if ivf is not None else None
    if isinstance(ivf, faiss.IndexIVFPQ):
        # Polysemous codes only help Hamming-filtered search, which we never use, and their training
        # takes minutes on a couple of cores.
        ivf.do_polysemous_training = False
    return index


def tune_for_search(index: faiss.Index, ef_search: int = 128, nprobe: int | None = None) -> faiss.Index:
    """Search-time knobs: FAISS defaults (HNSW efSearch 16, IVF nprobe 1) trade away most of the recall."""
    hnsw = getattr(faiss.downcast_index(index), "hnsw", None)
    if hnsw is not None:
        hnsw.efSearch = ef_search
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None:
        # fast-scan codes (the auto compressed index) are cheap to scan and re-ranked exactly: more lists, for recall
        if isinstance(faiss.downcast_index(ivf), faiss.IndexIVFFastScan):
            auto = min(COMPRESSED_NPROBE_MAX, max(8, ivf.nlist // COMPRESSED_NPROBE_SHARE))
        else:
            auto = max(8, ivf.nlist // 16)
        ivf.nprobe = nprobe or min(ivf.nlist, auto)
    return index


def training_size(index: faiss.Index) -> int:
    """How many windows to train `index` on: TRAIN_MIN, or TRAIN_PER_LIST a list where an IVF index has more
    lists (with fewer a list its centroids are noisy and recall drops: docs/performance.md)."""
    ivf = faiss.try_extract_index_ivf(index)
    return max(TRAIN_MIN, TRAIN_PER_LIST * ivf.nlist if ivf is not None else 0)


def train_if_needed(index: faiss.Index, sample: np.ndarray, factory: str) -> None:
    if index.is_trained:
        return
    ivf = faiss.try_extract_index_ivf(index)
    needed = max(ivf.nlist if ivf is not None else 1, 256 if "PQ" in factory else 1)
    if len(sample) < needed:
        raise IndexBuildError(
            f"FAISS {factory!r} needs at least {needed} vectors to train, the library gave {len(sample)}; "
            "use a flat index (the default) for small libraries"
        )
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(os.cpu_count() or 1)  # the service pins FAISS to one thread; training wants all
    try:
        index.train(np.ascontiguousarray(sample, dtype=np.float32))
    finally:
        faiss.omp_set_num_threads(threads)


def read_faiss(path: Path, mmap: bool = False) -> faiss.Index:
    return read_faiss_mapped(path, mmap)[0]


def read_faiss_mapped(path: Path, mmap: bool = False) -> tuple[faiss.Index, bool]:
    """The index and whether its codes are memory-mapped (else read into RAM)."""
    # IFC maps the codes of Flat, HNSW and IVF (array lists) from the file; IO_FLAG_MMAP maps IVF lists only
    # (as on-disk lists), for FAISS builds or index types IFC does not cover.
    tries = (
        [faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY, faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY] if mmap else []
    )
    for flags in tries:
        try:
            return tune_for_search(faiss.read_index(str(path), flags)), True
        except RuntimeError:
            continue
    if mmap:
        log.warning("%s: this FAISS index type cannot be memory-mapped; reading it into memory", path)
    try:
        return tune_for_search(faiss.read_index(str(path))), False
    except RuntimeError as err:
        raise IndexCorruptError(f"{path}: cannot read FAISS index ({str(err).splitlines()[0]})") from None


# -- writing ----------------------------------------------------------------------------------------------
