"""`... IN (?, ?, ...)` over id lists of any length: SQLite caps one statement's parameters (32766 in many builds)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

IN_CHUNK = 10_000  # ids per statement

Query = Callable[[str, list[Any]], list[Any]]


def select_in(
    query: Query, sql: str, ids: Iterable[int], before: Sequence[Any] = (), after: Sequence[Any] = ()
) -> list[Any]:
    """The rows of `sql`, whose `{marks}` is the IN list, over `ids` (each once) in chunks of IN_CHUNK; `before`
    and `after` are the statement's other parameters, around the ids."""
    unique = list(dict.fromkeys(ids))  # an id in two chunks would give its rows twice
    rows: list[Any] = []
    for at in range(0, len(unique), IN_CHUNK):
        chunk = unique[at : at + IN_CHUNK]
        rows += query(sql.format(marks=",".join("?" * len(chunk))), [*before, *chunk, *after])
    return rows
