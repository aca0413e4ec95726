"""Process-wide thread settings: on small machines torch, OpenBLAS and FAISS pools otherwise fight."""

from __future__ import annotations

import os
import sys


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
    doubled the service's CPU per query: the extra thread spins between searches. A flat scan of 1e5 vectors is
    faster single-threaded too, when requests run side by side."""
    import faiss

    faiss.omp_set_num_threads(1)
