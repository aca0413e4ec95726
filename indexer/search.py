"""Searcher: query vectors -> FAISS -> best window per file -> a page of files. Ranking only: every read of
the index format goes through indexer.store.SnapshotReader."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from indexer.backends import search_backend
from indexer.errors import IndexMismatchError
from indexer.store import Clip, Filters, SnapshotReader

__all__ = ["Clip", "Filters", "Hit", "Page", "QuerySpec", "Searcher"]


@dataclass(frozen=True)
class Hit:
    file_id: int
    path: str
    score: float
    start: float
    end: float
    duration: float


@dataclass(frozen=True)
class QuerySpec:
    """What one query asks for besides its vector: a page of files and the filters they must pass."""

    k: int = 10
    offset: int = 0
    filters: Filters = Filters()


@dataclass(frozen=True)
class Page:
    hits: list[Hit]
    total: int  # files that match the filters (every file is a candidate for a semantic query)


class Searcher:
    """One loaded snapshot. Thread-safe for concurrent searches; a reload builds a new Searcher."""

    def __init__(self, index_dir: Path, mmap: bool = False, device: str = "cpu") -> None:
        """device 'cuda' searches on the GPU (indexer.backends); the FAISS index stays for lookups by id."""
        self.reader = SnapshotReader(index_dir, mmap)
        self.index_dir, self.mmap, self.device = self.reader.index_dir, mmap, device
        self.snapshot, self.manifest, self.library = self.reader.snapshot, self.reader.manifest, self.reader.library
        self.index, self.n_files = self.reader.index, self.reader.n_files
        self.backend = search_backend(self.index, device)
        self.query_dim = self.index.d  # smaller when the index holds an earlier, zero-padded form of the vectors

    @property
    def fingerprint(self) -> str:
        return self.reader.fingerprint

    def check_model(self, fingerprint: str, supersedes: list[dict[str, Any]] | tuple = ()) -> None:
        """Refuse queries from another model. `supersedes` (the model config's) lists earlier fingerprints of
        the same vectors zero-padded to more dimensions: such an index answers, with queries padded alike."""
        if fingerprint == self.fingerprint:
            return
        old = next((o for o in supersedes if o["fingerprint"] == self.fingerprint and o["dim"] == self.index.d), None)
        if old is None:
            raise IndexMismatchError(
                f"index {self.index_dir} was built with model {self.fingerprint}; "
                f"queries come from {fingerprint}: re-index with that model or query with the index's model"
            )
        self.query_dim = -1  # any narrower query is padded with zeros to the index's width

    def search(self, queries: np.ndarray, k: int = 10, offset: int = 0, filters: Filters | None = None) -> list[Page]:
        """queries (Q, dim), unit norm -> one Page per query of at most k files, best window each."""
        return self.search_many(queries, [QuerySpec(k, offset, filters or Filters())] * len(queries))

    def search_many(self, vectors: np.ndarray, queries: list[QuerySpec]) -> list[Page]:
        """One Page per (vector, query): queries of several requests share each FAISS call (the batcher's)."""
        vectors = self._shaped(vectors)
        totals = {f: self.reader.count(f) for f in {q.filters for q in queries}}
        wants = [min(q.k + q.offset, totals[q.filters]) for q in queries]
        pages: list[Page | None] = [None] * len(queries)
        todo = list(range(len(queries)))
        fetch = min(self.index.ntotal, max(16, 4 * max(wants, default=0)))
        while todo:
            scores, ids = self.backend.search(vectors[todo], fetch)
            still = []
            for row, i in enumerate(todo):
                q = queries[i]
                best = self._best_per_file(scores[row], ids[row], q.filters)
                if len(best) >= wants[i] or fetch >= self.index.ntotal:
                    pages[i] = Page(best[q.offset : q.offset + q.k], totals[q.filters])
                else:
                    still.append(i)  # filters dropped candidates: fetch more, for these queries only
            todo, fetch = still, min(self.index.ntotal, fetch * 4)
        return [p or Page([], 0) for p in pages]

    def _shaped(self, queries: np.ndarray) -> np.ndarray:
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        d = self.index.d
        if queries.ndim == 2 and self.query_dim == -1 and queries.shape[1] < d:
            queries = np.pad(queries, ((0, 0), (0, d - queries.shape[1])))  # an index of padded vectors
        if queries.ndim != 2 or queries.shape[1] != d:
            raise IndexMismatchError(f"query vectors of shape {queries.shape}; the index holds {d}-d vectors")
        return queries

    def _best_per_file(self, scores: np.ndarray, ids: np.ndarray, filters: Filters) -> list[Hit]:
        valid = ids >= 0
        scores, ids = scores[valid], ids[valid]
        rows = self.reader.windows([int(i) for i in ids], filters)
        seen: dict[int, Hit] = {}
        for score, wid in zip(scores, ids, strict=True):  # FAISS returns best first
            r = rows.get(int(wid))
            if r is not None and r.file_id not in seen:
                seen[r.file_id] = Hit(r.file_id, r.path, float(score), r.start, r.end, r.duration)
        return list(seen.values())

    def clip(self, file_id: int) -> Clip | None:
        return self.reader.clip(file_id)

    def window_vectors(self, file_id: int) -> np.ndarray:
        return self.reader.window_vectors(file_id)

    def close(self) -> None:
        self.reader.close()
