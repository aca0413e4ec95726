"""SQLite helpers of the indexer: the work caches' connection and transactions, and `... IN (?, ?, ...)` over id
lists of any length (SQLite caps one statement's parameters, 32766 in many builds)."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from audiosearch.indexer.errors import IndexCorruptError

IN_CHUNK = 10_000  # ids per statement

Query = Callable[[str, list[Any]], list[Any]]


def open_work_db(path: Path) -> sqlite3.Connection:
    """A cache file under INDEX_DIR/work, autocommit outside `transaction`; WAL keeps readers off the writer."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(str(path), isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    return db


@contextlib.contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[None]:
    db.execute("BEGIN")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def select_in(
    query: Query, sql: str, ids: Iterable[Any], before: Sequence[Any] = (), after: Sequence[Any] = ()
) -> list[Any]:
    """The rows of `sql`, whose `{marks}` is the IN list, over `ids` (each once) in chunks of IN_CHUNK; `before`
    and `after` are the statement's other parameters, around the ids."""
    unique = list(dict.fromkeys(ids))  # an id in two chunks would give its rows twice
    rows: list[Any] = []
    for at in range(0, len(unique), IN_CHUNK):
        chunk = unique[at : at + IN_CHUNK]
        rows += query(sql.format(marks=",".join("?" * len(chunk))), [*before, *chunk, *after])
    return rows


def connect_readonly(path: Path) -> sqlite3.Connection:
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True, check_same_thread=False)
        db.execute("SELECT 1 FROM files LIMIT 1")
    except sqlite3.Error as err:
        raise IndexCorruptError(f"{path}: cannot read metadata ({err})") from None
    return db
