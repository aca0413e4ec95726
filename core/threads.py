"""Process-wide thread settings: on small machines torch, OpenBLAS and FAISS pools otherwise fight."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_ARENA_MAX = -8  # glibc's mallopt parameter number (malloc.h)


def configure_threads(threads: int | None = None) -> int:
    """One intra-op pool sized to the cores; BLAS and FAISS kept from spawning pools of their own."""

    n = threads or int(os.environ.get("AUDIOSEARCH_THREADS", "0")) or (os.cpu_count() or 1)
    if "torch" in sys.modules:  # the slim runtime never imports torch; a torch model has by now
        sys.modules["torch"].set_num_threads(n)
    one_search_thread()
    from threadpoolctl import threadpool_limits

    threadpool_limits(1, user_api="blas")
    return n


def one_search_thread() -> None:
    """FAISS searches single-threaded in the calling thread: OpenMP's thread count is a per-thread setting, so
    each thread that searches sets it (the query batcher's does at start). Two OpenMP threads on a small index
    doubled the service's CPU per query: the extra thread spins between searches. Large Flat indexes are split
    over threads by indexer.search.backends.BlockedFlatScan instead, in threads that wait without spinning."""
    import faiss

    faiss.omp_set_num_threads(1)


def cap_malloc_arenas(arenas: int = 2) -> bool:
    """glibc gives threads heaps of their own (up to 8 per core); under the service's thread pools they fragment
    and RSS climbs, where two arenas hold it at the same throughput (bench/soak.py measures it). Hand-written: no
    library sets this at run time, and the
    MALLOC_ARENA_MAX variable only counts when set before the process starts. False: not glibc, or the operator
    set MALLOC_ARENA_MAX (then glibc applied theirs)."""
    if os.environ.get("MALLOC_ARENA_MAX"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(M_ARENA_MAX, arenas))
    except (OSError, AttributeError):
        return False
