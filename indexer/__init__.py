"""Building and reading indexes: a library with a CLI (app/cli.py) on top.

Exports resolve lazily (models/lazy.py), so decode worker processes stay free of torch and FAISS.
"""

from __future__ import annotations

from models.lazy import lazy_exports

_EXPORTS = {
    "IndexOptions": "indexer.build",
    "IndexReport": "indexer.build",
    "build_index": "indexer.build",
    "IndexBuildError": "indexer.errors",
    "IndexCorruptError": "indexer.errors",
    "IndexMismatchError": "indexer.errors",
    "IndexNotFoundError": "indexer.errors",
    "Clip": "indexer.store",
    "Filters": "indexer.store",
    "Hit": "indexer.search",
    "Page": "indexer.search",
    "QuerySpec": "indexer.search",
    "Searcher": "indexer.search",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_exports(__name__, _EXPORTS, globals())
