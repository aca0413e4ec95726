"""Searcher: query vectors -> FAISS -> best window per file -> rows from SQLite."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from indexer.errors import IndexCorruptError, IndexMismatchError
from indexer.store import connect_readonly, read_manifest, require_snapshot, tune_for_search

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Filters:
    path_prefix: str | None = None
    min_duration: float | None = None
    max_duration: float | None = None

    def sql(self) -> tuple[str, list[Any]]:
        clauses, args = [], []
        if self.path_prefix:
            clauses.append("substr(path, 1, ?) = ?")
            args += [len(self.path_prefix), self.path_prefix]
        if self.min_duration is not None:
            clauses.append("duration >= ?")
            args.append(self.min_duration)
        if self.max_duration is not None:
            clauses.append("duration <= ?")
            args.append(self.max_duration)
        return (" AND ".join(clauses) or "1"), args

    @property
    def active(self) -> bool:
        return any(v is not None and v != "" for v in (self.path_prefix, self.min_duration, self.max_duration))


@dataclass(frozen=True)
class Hit:
    file_id: int
    path: str
    score: float
    start: float
    end: float
    duration: float


@dataclass(frozen=True)
class Page:
    hits: list[Hit]
    total: int  # files that match the filters (every file is a candidate for a semantic query)


@dataclass(frozen=True)
class Clip:
    id: int
    path: str
    size: int
    duration: float
    sample_rate: int
    channels: int
    sha1: str
    windows: int


class Searcher:
    """One loaded snapshot. Thread-safe for concurrent searches; a reload builds a new Searcher."""

    def __init__(self, index_dir: Path, mmap: bool = False) -> None:
        """mmap: map the vectors from the snapshot file instead of reading them into RAM (the service sets it
        from AUDIOSEARCH_MMAP)."""
        self.index_dir = Path(index_dir)
        self.snapshot = require_snapshot(self.index_dir)
        self.manifest = read_manifest(self.snapshot)
        self.library = Path(self.manifest["library"])
        self.mmap = mmap
        self.index = _read_faiss(self.snapshot / "vectors.faiss", self.mmap)
        self.db = connect_readonly(self.snapshot / "meta.sqlite")
        self._lock = threading.Lock()
        self.n_files = self._one("SELECT COUNT(*) FROM files")[0]
        if self.index.ntotal != self._one("SELECT COUNT(*) FROM windows")[0]:
            raise IndexCorruptError(f"{self.snapshot}: vector and window counts differ")

    @property
    def fingerprint(self) -> str:
        return self.manifest["model"]["fingerprint"]

    def check_model(self, fingerprint: str) -> None:
        if fingerprint != self.fingerprint:
            raise IndexMismatchError(
                f"index {self.index_dir} was built with model {self.fingerprint}; "
                f"queries come from {fingerprint}: re-index with that model or query with the index's model"
            )

    def search(self, queries: np.ndarray, k: int = 10, offset: int = 0, filters: Filters | None = None) -> list[Page]:
        """queries (Q, dim), unit norm -> one Page per query of at most k files, best window each."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.index.d:
            raise IndexMismatchError(
                f"query vectors of shape {queries.shape}; the index holds {self.index.d}-d vectors"
            )
        filters = filters or Filters()
        total = self._count(filters)
        want = min(k + offset, total)
        return [Page(hits, total) for hits in self._search_grouped(queries, want, filters, k, offset)]

    def _search_grouped(self, queries: np.ndarray, want: int, filters: Filters, k: int, offset: int) -> list[list[Hit]]:
        fetch = min(self.index.ntotal, max(4 * want, 16))
        results: list[list[Hit] | None] = [None] * len(queries)
        todo = list(range(len(queries)))
        while todo:
            # FAISS searches are safe to run concurrently; only the SQLite connection needs the lock.
            scores, ids = self.index.search(queries[todo], fetch)
            still = []
            for row, q in enumerate(todo):
                best = self._best_per_file(scores[row], ids[row], filters)
                if len(best) >= want or fetch >= self.index.ntotal:
                    results[q] = best[offset : offset + k]
                else:
                    still.append(q)
            todo, fetch = still, min(self.index.ntotal, fetch * 4)
        return [r or [] for r in results]

    def _best_per_file(self, scores: np.ndarray, ids: np.ndarray, filters: Filters) -> list[Hit]:
        valid = ids >= 0
        scores, ids = scores[valid], ids[valid]
        if len(ids) == 0:
            return []
        where, args = filters.sql()
        marks = ",".join("?" * len(ids))
        rows = self._all(
            f'SELECT w.id, f.id, f.path, w.start, w."end", f.duration FROM windows w JOIN files f ON f.id = w.file_id '
            f"WHERE w.id IN ({marks}) AND {where}",
            [int(i) for i in ids] + args,
        )
        by_window = {r[0]: r for r in rows}
        seen: dict[int, Hit] = {}
        for score, wid in zip(scores, ids, strict=True):  # FAISS returns best first
            r = by_window.get(int(wid))
            if r is not None and r[1] not in seen:
                seen[r[1]] = Hit(r[1], r[2], float(score), r[3], r[4], r[5])
        return list(seen.values())

    def _count(self, filters: Filters) -> int:
        if not filters.active:
            return self.n_files
        where, args = filters.sql()
        return self._one(f"SELECT COUNT(*) FROM files WHERE {where}", args)[0]

    def clip(self, file_id: int) -> Clip | None:
        row = self._one(
            "SELECT f.id, f.path, f.size, f.duration, f.sample_rate, f.channels, f.sha1, COUNT(w.id) "
            "FROM files f JOIN windows w ON w.file_id = f.id WHERE f.id = ? GROUP BY f.id",
            [file_id],
        )
        return Clip(*row) if row and row[0] is not None else None

    def window_vectors(self, file_id: int) -> np.ndarray:
        ids = [r[0] for r in self._all("SELECT id FROM windows WHERE file_id = ? ORDER BY id", [file_id])]
        return np.stack([self.index.reconstruct(i) for i in ids]) if ids else np.zeros((0, self.index.d), "float32")

    def close(self) -> None:
        self.db.close()

    def _one(self, sql: str, args: list[Any] | None = None) -> Any:
        with self._lock:
            return self.db.execute(sql, args or []).fetchone()

    def _all(self, sql: str, args: list[Any]) -> list[Any]:
        with self._lock:
            return self.db.execute(sql, args).fetchall()


def _read_faiss(path: Path, mmap: bool = False) -> faiss.Index:
    # IFC maps the codes of Flat, HNSW and IVF (array lists) from the file; IO_FLAG_MMAP maps IVF lists only
    # (as on-disk lists), for FAISS builds or index types IFC does not cover.
    tries = (
        [faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY, faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY] if mmap else []
    )
    for flags in tries:
        try:
            return tune_for_search(faiss.read_index(str(path), flags))
        except RuntimeError:
            continue
    if mmap:
        log.warning("%s: this FAISS index type cannot be memory-mapped; reading it into memory", path)
    try:
        return tune_for_search(faiss.read_index(str(path)))
    except RuntimeError as err:
        raise IndexCorruptError(f"{path}: cannot read FAISS index ({str(err).splitlines()[0]})") from None
