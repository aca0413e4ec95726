"""Searcher: one loaded snapshot answering pages of queries. Ranking goes one way: Searcher -> HybridRanker
(indexer.search.fusion: mode hybrid, audio or text, with evidence) -> AudioIndex (indexer.search.audio: the
backend's best window per file) -> SnapshotReader (indexer.store: every read of the index format)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from audiosearch.core.errors import AudioSearchError, InvalidInputError
from audiosearch.indexer.errors import IndexMismatchError, IndexNotFoundError
from audiosearch.indexer.search.audio import AudioIndex
from audiosearch.indexer.search.fusion import FUSION, MODES, HybridRanker
from audiosearch.indexer.search.results import Evidence, Hit
from audiosearch.indexer.store import Clip, Filters, SnapshotReader

if TYPE_CHECKING:
    from audiosearch.indexer.search.shards import ShardSource

__all__ = ["Clip", "Evidence", "Filters", "Hit", "Page", "QuerySpec", "Searcher"]


@dataclass(frozen=True)
class QuerySpec:
    """What one query asks for besides its vector: a page of files, the filters they must pass, and, for a text
    query, its text (which enables the library's words), the ranking mode and the close-match threshold."""

    k: int = 10
    offset: int = 0
    filters: Filters = Filters()
    text: str | None = None  # None: a query by audio example, ranked by audio
    mode: str = "hybrid"
    min_score: float | None = None  # default: the mode's calibrated threshold (text queries only)


@dataclass(frozen=True)
class Page:
    hits: list[Hit]
    total: int  # files that match the filters (every file is a candidate for a semantic query)
    mode: str = "audio"  # the ranking used: hybrid, audio or text (hybrid on an index without words is audio)
    min_score: float | None = None  # the "close match" threshold applied
    close_match: bool = True  # whether the best file of the whole ranking reaches min_score


class Searcher:
    """One loaded snapshot. Thread-safe for concurrent searches; a reload builds a new Searcher."""

    def __init__(
        self, index_dir: Path, mmap: bool = False, device: str = "cpu", shards: ShardSource | None = None
    ) -> None:
        """device 'cuda' searches on the GPU (indexer.search.backends); the FAISS index stays for lookups by id.
        `shards`: the candidate searches run on the shards of this snapshot (indexer.search.shards), opened
        before this returns; the reader (mmap advised) then serves metadata, words and exact rescoring only."""
        self.reader = SnapshotReader(index_dir, mmap)
        self.index_dir, self.mmap, self.device = self.reader.index_dir, mmap, device
        self.snapshot, self.manifest, self.library = self.reader.snapshot, self.reader.manifest, self.reader.library
        self.index, self.n_files = self.reader.index, self.reader.n_files
        self.sharded = shards.open(self.snapshot) if shards is not None else None
        self.audio = AudioIndex(self.reader, device, backend=self.sharded)
        self.query_dim = self.index.d  # smaller when the index holds an earlier, zero-padded form of the vectors
        self.fusion = FUSION  # hybrid weights and close-match thresholds (audiosearch.indexer.search.fusion)

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
        each = texts if texts is not None else [None] * len(queries)
        specs = [QuerySpec(k, offset, filters or Filters(), t, mode, min_score) for t in each]
        pages = self.search_many(queries, specs)
        for p in pages:
            if isinstance(p, Exception):
                raise p
        return pages  # type: ignore[return-value]

    def search_many(self, vectors: np.ndarray, specs: list[QuerySpec]) -> list[Page | AudioSearchError]:
        """One Page per (vector, spec): the queries of several requests (the batcher's) share FAISS calls, grouped
        by mode and filters. A spec that cannot be answered (an unknown mode, text search on an index without
        words) gets its error in its place, so the other queries of a batch are answered."""
        vectors = self._shaped(vectors)
        out: list[Page | AudioSearchError | None] = [None] * len(specs)
        groups: dict[tuple[str, Filters, bool], list[int]] = defaultdict(list)
        for i, spec in enumerate(specs):
            try:
                mode = self.effective_mode(spec.mode if spec.text is not None else "audio")
            except AudioSearchError as err:
                out[i] = err
                continue
            groups[(mode, spec.filters, spec.text is not None)].append(i)
        for (mode, filters, with_text), rows in groups.items():
            for i, page in zip(rows, self._pages(vectors[rows], [specs[i] for i in rows], mode, filters, with_text),
                               strict=True):  # fmt: skip
                out[i] = page
        return out  # type: ignore[return-value]

    def _pages(
        self, vectors: np.ndarray, specs: list[QuerySpec], mode: str, filters: Filters, with_text: bool
    ) -> list[Page]:
        total = self.reader.count_worded(filters) if mode == "text" else self.reader.count(filters)
        want = min(max(s.k + s.offset for s in specs), total)
        first = min(s.offset for s in specs)  # the ranker computes evidence from here on
        word_search = self.sharded.vector_search if self.sharded is not None else None
        ranker = HybridRanker(self.audio, self.fusion, use_words=with_text, word_search=word_search)
        texts = [s.text or "" for s in specs]
        pages = []
        for s, r in zip(specs, ranker.rank(vectors, texts, want, filters, mode, page_from=first), strict=True):
            # The thresholds are calibrated for text queries; a query by audio example is flagged only when asked.
            threshold = s.min_score if s.min_score is not None or not with_text else self.fusion.min_score[mode]
            hits = r.hits[s.offset - first : s.offset - first + s.k]
            pages.append(Page(hits, total, mode, threshold, _close(r.top, threshold)))
        return pages

    def similar(
        self, file_id: int, k: int = 10, offset: int = 0, start: float | None = None, mode: str = "audio"
    ) -> tuple[Clip, Page]:
        """More like this: the library ranked by audio against one indexed file's own stored window vectors
        (nothing is decoded or encoded). The query is the mean of the file's windows, normalised (the whole file),
        or, with `start` (seconds, 0 <= start < duration), the one window that holds that moment. The file itself
        is listed first, whatever its score: a copy of it ties, and for a file whose windows differ another
        file's window may even lie closer to their mean than any of its own. The other files follow by audio,
        best window each. Only mode `audio`: the query is a sound, not words. Returns the clip and the page."""
        if mode != "audio":
            raise InvalidInputError(
                f"similar files are ranked by audio only: the query is the clip's sound, not text; got mode {mode!r}, "
                "use mode=audio"
            )
        clip = self.clip(file_id)
        if clip is None:
            raise IndexNotFoundError(f"no clip with id {file_id}")
        windows = self.reader.file_windows([file_id])[file_id]  # (window id, start, end), in window order
        vectors = self.window_vectors(file_id)  # the same order
        if start is None:
            q = vectors.mean(axis=0)
        elif not 0 <= start < clip.duration:  # NaN fails too
            raise InvalidInputError(
                f"start must lie within the clip: 0 <= start < {clip.duration:g} seconds; got {start:g}"
            )
        else:
            q = vectors[max((i for i, w in enumerate(windows) if w[1] <= start), default=0)]  # the last to start
        norm = float(np.linalg.norm(q))
        if not norm > 0:
            raise InvalidInputError(f"clip {file_id} has no usable stored vector")
        q = (q / norm).astype(np.float32)
        own = np.einsum("ij,j->i", vectors, q)  # as HybridRanker._audio scores stored windows
        j = int(np.argmax(own))
        first = Hit(file_id, clip.path, float(own[j]), windows[j][1], windows[j][2], clip.duration)
        # The others: the audio ranking with the clip taken out (it may be anywhere in it, or absent from a page).
        (page,) = self.search(q[None], k=offset + k, mode="audio")
        ranked = [first, *(h for h in page.hits if h.file_id != file_id)]
        return clip, Page(ranked[offset : offset + k], page.total, "audio", None, True)

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

    def _shaped(self, queries: np.ndarray) -> np.ndarray:
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        d = self.index.d
        if queries.ndim == 2 and self.query_dim == -1 and queries.shape[1] < d:
            queries = np.pad(queries, ((0, 0), (0, d - queries.shape[1])))  # an index of padded vectors
        if queries.ndim != 2 or queries.shape[1] != d:
            raise IndexMismatchError(f"query vectors of shape {queries.shape}; the index holds {d}-d vectors")
        return queries

    def clip(self, file_id: int) -> Clip | None:
        return self.reader.clip(file_id)

    def window_vectors(self, file_id: int) -> np.ndarray:
        return self.reader.window_vectors(file_id)

    def close(self) -> None:
        self.reader.close()


def _close(top: float | None, threshold: float | None) -> bool:
    """Whether the best file of a ranking reaches the threshold (no threshold: nothing is flagged)."""
    return threshold is None or (top is not None and top >= threshold)
