"""Building and reading indexes: a library with a CLI (app/cli.py) on top.

Exports resolve lazily (PEP 562) so decode worker processes, which import `indexer.decode`, stay free
of torch and FAISS.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "IndexOptions": "indexer.build",
    "IndexReport": "indexer.build",
    "build_index": "indexer.build",
    "IndexBuildError": "indexer.errors",
    "IndexCorruptError": "indexer.errors",
    "IndexMismatchError": "indexer.errors",
    "IndexNotFoundError": "indexer.errors",
    "Clip": "indexer.search",
    "Filters": "indexer.search",
    "Hit": "indexer.search",
    "Page": "indexer.search",
    "Searcher": "indexer.search",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'indexer' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value
