"""Audio candidates: query vectors -> the search backend -> the best window of each file, best first.

What both the Searcher (audio pages) and the HybridRanker (the audio list it fuses) search with; it reads the
snapshot through its SnapshotReader and searches through the backend chosen for the search device (a compressed
index's candidates re-scored exactly from the full vectors stored beside it: backends.RerankedSearch).
"""

from __future__ import annotations

import numpy as np

from audiosearch.indexer.search.backends import RerankedSearch, SearchBackend, search_backend
from audiosearch.indexer.search.results import Hit
from audiosearch.indexer.store import Filters, SnapshotReader


class AudioIndex:
    """One snapshot's audio windows, searched per file. Thread-safe for concurrent searches."""

    def __init__(self, reader: SnapshotReader, device: str = "cpu", backend: SearchBackend | None = None) -> None:
        """`backend`: where the windows are searched instead of the reader's own index (a sharded index:
        audiosearch.indexer.search.shards); it must give that index's ids and scores."""
        self.reader, self.index = reader, reader.index
        if backend is not None:  # sharded: the shards' merged top-k (Flat only)
            self.backend = backend
        else:
            self.backend = search_backend(self.index, device)
            if reader.vectors is not None:  # a compressed index: its candidates re-scored from the full vectors
                self.backend = RerankedSearch(self.backend, reader.vectors)

    def grouped(self, vectors: np.ndarray, n: int, filters: Filters) -> list[list[Hit]]:
        """The best n files by audio (best window each) for each of the (shaped) vectors, in one FAISS call
        (repeated, with more candidates, only for queries whose filters dropped too many)."""
        want = min(n, self.reader.count(filters))
        ntotal = self.index.ntotal
        fetch = min(ntotal, max(4 * want, 16))
        results: list[list[Hit] | None] = [None] * len(vectors)
        todo = list(range(len(vectors)))
        while todo:
            scores, ids = self.backend.search(vectors[todo], fetch)
            still = []
            for row, q in enumerate(todo):
                best = self._best_per_file(scores[row], ids[row], filters)
                if len(best) >= want or fetch >= ntotal:
                    results[q] = best[:n]
                else:
                    still.append(q)  # filters dropped candidates: fetch more, for these queries only
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
