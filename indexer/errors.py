"""Indexer/search exceptions; each maps to one HTTP status and one CLI exit code."""

from audiosearch.core.errors import AudioSearchError


class IndexNotFoundError(AudioSearchError):
    """No usable index at the given directory."""


class IndexCorruptError(AudioSearchError):
    """The index directory exists but its snapshot cannot be read."""


class IndexMismatchError(AudioSearchError):
    """Query vectors come from another model than the one the index was built with."""


class IndexBuildError(AudioSearchError):
    """The index could not be built (bad FAISS factory, too few vectors to train, nothing indexable)."""
