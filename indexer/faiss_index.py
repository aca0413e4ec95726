"""The FAISS side of a snapshot: which index a factory string makes, how it is trained, read (memory-mapped on
request) and tuned for search. audiosearch.indexer.store uses these to write and read snapshots."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import faiss
import numpy as np

from audiosearch.indexer.errors import IndexBuildError, IndexCorruptError

log = logging.getLogger(__name__)


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
        ivf.nprobe = nprobe or min(ivf.nlist, max(8, ivf.nlist // 16))
    return index


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
    # IFC maps the codes of Flat, HNSW and IVF (array lists) from the file; IO_FLAG_MMAP maps IVF lists only
    # (as on-disk lists), for FAISS builds or index types IFC does not cover.
    tries = (
        [faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY, faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY] if mmap else []
    )
    for flags in tries:
        try:
            return tune_for_search(faiss.read_index(str(path), flags))
        except RuntimeError:
            continue
    if mmap:
        log.warning("%s: this FAISS index type cannot be memory-mapped; reading it into memory", path)
    try:
        return tune_for_search(faiss.read_index(str(path)))
    except RuntimeError as err:
        raise IndexCorruptError(f"{path}: cannot read FAISS index ({str(err).splitlines()[0]})") from None


# -- writing ----------------------------------------------------------------------------------------------
