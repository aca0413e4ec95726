"""Building and reading indexes: a library with a CLI (app/cli.py) on top."""

from indexer.build import IndexOptions, IndexReport, build_index
from indexer.errors import IndexBuildError, IndexCorruptError, IndexMismatchError, IndexNotFoundError
from indexer.search import Clip, Filters, Hit, Page, Searcher

__all__ = [
    "Clip",
    "Filters",
    "Hit",
    "IndexBuildError",
    "IndexCorruptError",
    "IndexMismatchError",
    "IndexNotFoundError",
    "IndexOptions",
    "IndexReport",
    "Page",
    "Searcher",
    "build_index",
]
