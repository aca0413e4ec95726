"""Building and reading indexes: a library with a CLI (app/cli.py) on top.

Exports resolve lazily (core/lazy.py), so decode worker processes stay free of torch and FAISS.
"""

from __future__ import annotations

from audiosearch.core.lazy import lazy_exports

_EXPORTS = {
    "IndexOptions": "audiosearch.indexer.build",
    "IndexReport": "audiosearch.indexer.build",
    "build_index": "audiosearch.indexer.build",
    "IndexBuildError": "audiosearch.indexer.errors",
    "IndexCorruptError": "audiosearch.indexer.errors",
    "IndexMismatchError": "audiosearch.indexer.errors",
    "IndexNotFoundError": "audiosearch.indexer.errors",
    "Clip": "audiosearch.indexer.store",
    "Filters": "audiosearch.indexer.store",
    "Hit": "audiosearch.indexer.search.searcher",
    "Page": "audiosearch.indexer.search.searcher",
    "QuerySpec": "audiosearch.indexer.search.searcher",
    "Searcher": "audiosearch.indexer.search.searcher",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_exports(__name__, _EXPORTS, globals())
