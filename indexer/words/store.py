"""The words part of the snapshot format (used by audiosearch.indexer.store's SnapshotWriter and SnapshotReader only).

meta.sqlite gains
  words(file_id, path_words, tag_words, tags)   every file; words space-separated, tags as JSON {field: text}
  words_fts(text)                               FTS5 (porter stemming), rowid = file id, files with words only
and the snapshot a second FAISS file, words.faiss: IDMap2 over file ids of the text-tower vector of each
file's words (files with words only). The manifest's "words" entry says they are there; a snapshot written
before them has neither and is searched by audio alone.
"""

from __future__ import annotations

import json
import math
import re
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from audiosearch.indexer.errors import IndexBuildError, IndexCorruptError
from audiosearch.indexer.search.backends import BlockedFlatScan, flat_storage
from audiosearch.indexer.sql_in import select_in
from audiosearch.indexer.words.extract import FileWords

WORDS_VERSION = 1
WORD_VECTORS = "words.faiss"
WORDS_SCHEMA = """
CREATE TABLE words (file_id INTEGER PRIMARY KEY REFERENCES files(id), path_words TEXT NOT NULL,
                    tag_words TEXT NOT NULL, tags TEXT NOT NULL);
CREATE VIRTUAL TABLE words_fts USING fts5(text, tokenize = 'porter unicode61 remove_diacritics 2');
"""
BM25_K1 = 1.2  # FTS5's bm25() constants
MAX_TERMS = 32  # of one query: longer queries keep their first 32 distinct words
DF_CACHE = 8192  # query terms whose document frequency is remembered
MARK = ("\x02", "\x03")  # around matched words in FTS5's highlight(); never part of a word
HIGHLIGHT = re.compile(f"{MARK[0]}([^{MARK[1]}]*){MARK[1]}")


class WordsWriter:
    def __init__(self, db: sqlite3.Connection, folder: Path, dim: int) -> None:
        self.db, self.folder = db, folder
        self.db.executescript(WORDS_SCHEMA)
        self.index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        self.files = 0

    def add(self, rows: list[tuple[int, FileWords]], vectors: np.ndarray) -> None:
        """Words of these files, and the text vectors of those with words (in row order)."""
        self.db.executemany(
            "INSERT INTO words (file_id, path_words, tag_words, tags) VALUES (?, ?, ?, ?)",
            [(fid, " ".join(w.path), " ".join(w.tags), w.fields_json()) for fid, w in rows],
        )
        worded = [(fid, w) for fid, w in rows if w.informative]
        self.db.executemany("INSERT INTO words_fts (rowid, text) VALUES (?, ?)", [(fid, w.text) for fid, w in worded])
        if len(vectors) != len(worded):
            raise IndexBuildError(f"internal: {len(vectors)} word vectors for {len(worded)} files with words")
        if worded:
            ids = np.asarray([fid for fid, _ in worded], dtype=np.int64)
            self.index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), ids)
        self.files += len(rows)

    def finish(self) -> dict[str, Any]:
        """Writes words.faiss; returns the manifest's "words" entry."""
        faiss.write_index(self.index, str(self.folder / WORD_VECTORS))
        return {"version": WORDS_VERSION, "files": self.files, "with_words": int(self.index.ntotal)}


class WordsReader:
    """Read side: a file's words, BM25 over them, and their text vectors. `query` runs SQL under the
    snapshot reader's connection lock."""

    def __init__(self, snapshot: Path, query: Callable[[str, list[Any]], list[Any]], read_index: Callable) -> None:
        self._query = query
        self.index = read_index(snapshot / WORD_VECTORS)
        self.ids = faiss.vector_to_array(self.index.id_map).astype(np.int64) if self.index.ntotal else np.zeros(0)
        # File id -> row of the stored vectors, by binary search over the sorted ids (no per-file dict or
        # per-file reconstruct call on the query path); the matrix is a view of FAISS's own storage, not a copy.
        self._order = np.argsort(self.ids, kind="stable")
        self._sorted = self.ids[self._order]
        self._matrix = flat_storage(self.index)
        # Large libraries: the blocked scan over the IDMap's storage (its ids are rows, mapped by self.ids).
        self._scan = BlockedFlatScan(self.index) if BlockedFlatScan.fits(self.index) else None
        self.n_docs = self._query("SELECT COUNT(*) FROM words_fts", [])[0][0]
        if self.n_docs != self.index.ntotal:
            raise IndexCorruptError(f"{snapshot}: {self.n_docs} files with words but {self.index.ntotal} vectors")
        self._lock = threading.Lock()  # document frequencies of recent query terms (an LRU: memory stays bounded)
        self._df: OrderedDict[str, int] = OrderedDict()

    def of(self, file_id: int) -> FileWords | None:
        rows = self._query("SELECT path_words, tag_words, tags FROM words WHERE file_id = ?", [file_id])
        if not rows:
            return None
        path, tags, fields = rows[0]
        return FileWords(tuple(path.split()), tuple(tags.split()), json.loads(fields))

    def worded(self, file_ids: Iterable[int]) -> set[int]:
        return {r[0] for r in select_in(self._query, "SELECT rowid FROM words_fts WHERE rowid IN ({marks})", file_ids)}

    def lexical(
        self, terms: list[str], limit: int | None = None, file_ids: list[int] | None = None
    ) -> dict[int, tuple[float, tuple[str, ...]]]:
        """file id -> (score, matched words) for the files whose words hold any of `terms`, best first; `limit`
        files at most, or only those of `file_ids`. The score is BM25 relative to a perfect match, in [0, 1]:
        FTS5's bm25() over the sum of the terms' idf (what a file holding each term once, at average length,
        scores), capped at 1. Matched words are the file's words that FTS5's stemmer matched ('barking' for
        'bark')."""
        terms = list(dict.fromkeys(terms))[:MAX_TERMS]
        if not terms or self.n_docs == 0 or (file_ids is not None and not file_ids):
            return {}
        total_idf = sum(self._idf(t) for t in terms)
        sql = "SELECT rowid, -bm25(words_fts), highlight(words_fts, 0, ?, ?) FROM words_fts WHERE words_fts MATCH ?"
        args: list[Any] = [*MARK, " OR ".join(_quoted(t) for t in terms)]
        order = " ORDER BY bm25(words_fts), rowid"  # a list cut inside a tie keeps the lowest ids, as pages order ties
        cut = (" LIMIT ?", [limit]) if limit is not None else ("", [])
        if file_ids is None:
            rows = self._query(sql + order + cut[0], args + cut[1])
        else:  # chunks of the ids, each cut alone, then merged in the same order and cut again
            rows = select_in(self._query, sql + " AND rowid IN ({marks})" + order + cut[0], file_ids, args, cut[1])
            rows = sorted(rows, key=lambda r: (-r[1], r[0]))[:limit]
        return {
            fid: (min(1.0, score / total_idf), tuple(dict.fromkeys(HIGHLIGHT.findall(marked))))
            for fid, score, marked in rows
        }

    def _idf(self, term: str) -> float:
        """FTS5's idf: log((N - n + 0.5) / (n + 0.5)), at least 1e-6; n = files holding the (stemmed) term."""
        with self._lock:
            n = self._df.get(term)
            if n is not None:
                self._df.move_to_end(term)
        if n is None:
            n = self._query("SELECT COUNT(*) FROM words_fts WHERE words_fts MATCH ?", [_quoted(term)])[0][0]
            with self._lock:
                self._df[term] = n
                while len(self._df) > DF_CACHE:
                    self._df.popitem(last=False)
        return max(1e-6, math.log((self.n_docs - n + 0.5) / (n + 0.5)))

    def vector_search(self, queries: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(Q, n) cosines and file ids of the files whose words are closest to each query (-1: none)."""
        n = min(n, int(self.index.ntotal))
        if n == 0:
            return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if self._scan is None:
            return self.index.search(queries, n)
        scores, rows = self._scan.search(queries, n)
        return scores, np.where(rows >= 0, self.ids[np.maximum(rows, 0)], -1)

    def vectors(self, file_ids: Iterable[int]) -> dict[int, np.ndarray]:
        """Text vectors of those of these files that have words."""
        ids = np.fromiter(file_ids, dtype=np.int64)
        if not len(ids) or not len(self._sorted):
            return {}
        at = np.minimum(np.searchsorted(self._sorted, ids), len(self._sorted) - 1)
        found = self._sorted[at] == ids  # files without words are not in the index
        rows = self._order[at[found]]
        vecs = self._matrix[rows] if self._matrix is not None else [self.index.reconstruct(int(i)) for i in ids[found]]
        return dict(zip(ids[found].tolist(), vecs, strict=True))


def _quoted(term: str) -> str:
    return '"' + term.replace('"', '""') + '"'
