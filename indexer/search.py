"""Searcher: query vectors -> FAISS -> best window per file -> a page of files. Ranking only: every read of
the index format goes through indexer.store.SnapshotReader. Queries that come with their text are ranked by
indexer.hybrid (mode hybrid, audio or text), with evidence and a "no close match" flag per page."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from indexer.errors import IndexMismatchError
from indexer.hybrid import FUSION, MODES, Evidence, HybridRanker
from indexer.store import Clip, Filters, SnapshotReader
from models.errors import InvalidInputError

__all__ = ["Clip", "Evidence", "Filters", "Hit", "Page", "Searcher"]


@dataclass(frozen=True)
class Hit:
    file_id: int
    path: str
    score: float
    start: float
    end: float
    duration: float
    evidence: Evidence | None = None  # what matched (queries with text)


@dataclass(frozen=True)
class Page:
    hits: list[Hit]
    total: int  # files that match the filters (every file is a candidate for a semantic query)
    mode: str = "audio"  # the ranking used: hybrid, audio or text (hybrid on an index without words is audio)
    min_score: float | None = None  # the "close match" threshold applied
    close_match: bool = True  # whether the best file of the whole ranking reaches min_score


class Searcher:
    """One loaded snapshot. Thread-safe for concurrent searches; a reload builds a new Searcher."""

    def __init__(self, index_dir: Path, mmap: bool = False) -> None:
        self.reader = SnapshotReader(index_dir, mmap)
        self.index_dir, self.mmap = self.reader.index_dir, mmap
        self.snapshot, self.manifest, self.library = self.reader.snapshot, self.reader.manifest, self.reader.library
        self.index, self.n_files = self.reader.index, self.reader.n_files
        self.query_dim = self.index.d  # smaller when the index holds an earlier, zero-padded form of the vectors
        self.fusion = FUSION  # hybrid weights and close-match thresholds (indexer.hybrid)

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

    def search(
        self,
        queries: np.ndarray,
        k: int = 10,
        offset: int = 0,
        filters: Filters | None = None,
        texts: list[str] | None = None,
        mode: str = "hybrid",
        min_score: float | None = None,
    ) -> list[Page]:
        """queries (Q, dim), unit norm -> one Page per query of at most k files, best window each.

        `texts` (the queries as typed) enable the words of the library: mode hybrid (audio and words fused),
        audio, or text (words only). Without texts (query by example) the ranking is by audio. Each page says
        whether its best file reaches `min_score` (default: the mode's calibrated threshold)."""
        queries = self._shaped(queries)
        filters = filters or Filters()
        mode = self.effective_mode(mode if texts is not None else "audio")
        total = self.reader.count_worded(filters) if mode == "text" else self.reader.count(filters)
        want = min(k + offset, total)
        # The thresholds are calibrated for text queries; a query by audio example is flagged only when asked.
        threshold = min_score if min_score is not None or texts is None else self.fusion.min_score[mode]
        ranker = HybridRanker(self, self.fusion, use_words=texts is not None)
        ranked = ranker.rank(queries, texts or [""] * len(queries), want, filters, mode, page_from=offset)
        return [Page(r.hits[:k], total, mode, threshold, _close(r.top, threshold)) for r in ranked]

    def effective_mode(self, mode: str) -> str:
        """The mode a query gets: hybrid on an index built before words were indexed is audio."""
        if mode not in MODES:
            raise InvalidInputError(f"unknown mode {mode!r}; use one of: {', '.join(MODES)}")
        if self.reader.words is None and mode != "audio":
            if mode == "text":
                raise IndexMismatchError(
                    f"index {self.index_dir} was built before file words were indexed: text search needs them; "
                    "rerun `audiosearch index` (it embeds nothing again) or search with mode=audio"
                )
            return "audio"
        return mode

    def grouped(self, queries: np.ndarray, n: int, filters: Filters) -> list[list[Hit]]:
        """The best n files by audio (best window each) for each of the (shaped) queries."""
        return self._search_grouped(queries, min(n, self.reader.count(filters)), filters, n, 0)

    def _shaped(self, queries: np.ndarray) -> np.ndarray:
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        d = self.index.d
        if queries.ndim == 2 and self.query_dim == -1 and queries.shape[1] < d:
            queries = np.pad(queries, ((0, 0), (0, d - queries.shape[1])))  # an index of padded vectors
        if queries.ndim != 2 or queries.shape[1] != d:
            raise IndexMismatchError(f"query vectors of shape {queries.shape}; the index holds {d}-d vectors")
        return queries

    def _search_grouped(self, queries: np.ndarray, want: int, filters: Filters, k: int, offset: int) -> list[list[Hit]]:
        ntotal = self.index.ntotal
        fetch = min(ntotal, max(4 * want, 16))
        results: list[list[Hit] | None] = [None] * len(queries)
        todo = list(range(len(queries)))
        while todo:
            scores, ids = self.index.search(queries[todo], fetch)
            still = []
            for row, q in enumerate(todo):
                best = self._best_per_file(scores[row], ids[row], filters)
                if len(best) >= want or fetch >= ntotal:
                    results[q] = best[offset : offset + k]
                else:
                    still.append(q)
            todo, fetch = still, min(ntotal, fetch * 4)
        return [r or [] for r in results]

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


def _close(top: float | None, threshold: float | None) -> bool:
    """Whether the best file of a ranking reaches the threshold (no threshold: nothing is flagged)."""
    return threshold is None or (top is not None and top >= threshold)
