"""Process-wide thread settings: on small machines torch, OpenBLAS and FAISS pools otherwise fight."""

from __future__ import annotations

import os
import sys


def configure_threads(threads: int | None = None) -> int:
    """One intra-op pool sized to the cores; BLAS and FAISS kept from spawning pools of their own."""
    import faiss

    n = threads or int(os.environ.get("AUDIOSEARCH_THREADS", "0")) or (os.cpu_count() or 1)
    if "torch" in sys.modules:  # the slim runtime never imports torch; a torch model has by now
        sys.modules["torch"].set_num_threads(n)
    faiss.omp_set_num_threads(1)  # flat search over 1e5 vectors is faster single-threaded than contended
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1, user_api="blas")
    except ImportError:  # threadpoolctl comes with librosa/scikit-learn; without it BLAS keeps its default
        pass
    return n
