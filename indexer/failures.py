"""Files that could not be decoded, remembered by content hash in the work cache (INDEX_DIR/work/cache.sqlite).

An unchanged rerun neither decodes them again (seconds for a large corrupt file) nor repeats the decoder's
stderr: they are reported as skipped with the reason of the run that tried. New contents (a new hash) are
tried again, and `IndexOptions.retry_failed` (`audiosearch index --retry-failed`) tries them all again.
"""

from __future__ import annotations

from pathlib import Path

from audiosearch.indexer.decoded import Decoded
from audiosearch.indexer.sqlite import open_work_db, transaction

# Keyed by content hash alone: whether bytes decode does not depend on the model or the window settings.
SCHEMA = """
CREATE TABLE IF NOT EXISTS failures (
    sha1 TEXT PRIMARY KEY, path TEXT NOT NULL, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, reason TEXT NOT NULL
);
"""


class FailureMemory:
    """The failures of the last run, and this run's as they come (saved at its end, replacing the last's)."""

    def __init__(self, path: Path, retry: bool = False) -> None:
        self.db = open_work_db(path)
        self.db.executescript(SCHEMA)
        rows = [] if retry else self.db.execute("SELECT sha1, path, size, mtime_ns, reason FROM failures").fetchall()
        self.rows = {r[0]: r[1:] for r in rows}
        self.now: dict[str, tuple[str, int, int, str]] = {}

    def known_hashes(self) -> dict[str, tuple[int, int, str]]:
        """path -> (size, mtime_ns, sha1): a remembered file with the same size and mtime is not hashed again."""
        return {path: (size, mtime, sha1) for sha1, (path, size, mtime, _) in self.rows.items()}

    def reasons(self) -> dict[str, tuple[str, str]]:
        """sha1 -> (path, reason) for the decode workers."""
        return {sha1: (path, reason) for sha1, (path, _, _, reason) in self.rows.items()}

    def note(self, d: Decoded) -> None:
        if d.decode_failed and d.sha1 and d.error:  # the first path of some content keeps its reason
            self.now.setdefault(d.sha1, (d.job.path, d.job.size, d.job.mtime_ns, d.error))

    def save(self) -> None:
        """This run's failures replace the last run's: contents gone from the library are forgotten."""
        with transaction(self.db):
            self.db.execute("DELETE FROM failures")
            self.db.executemany("INSERT INTO failures VALUES (?, ?, ?, ?, ?)", [(h, *v) for h, v in self.now.items()])

    def close(self) -> None:
        self.db.close()


def recalled(d: Decoded, failed: dict[str, tuple[str, str]]) -> bool:
    """In a worker: give `d` its remembered failure, if its content has one; True if it did."""
    if d.sha1 not in failed:
        return False
    path, reason = failed[d.sha1]
    d.error, d.decode_failed = reason.replace(path, d.job.path, 1), True  # the same bytes under another name
    return True
