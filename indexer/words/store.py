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
import sqlite3
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from audiosearch.indexer.errors import IndexBuildError, IndexCorruptError
from audiosearch.indexer.search.backends import BlockedFlatScan, flat_storage
from audiosearch.indexer.sqlite import select_in
from audiosearch.indexer.words.bm25 import Bm25
from audiosearch.indexer.words.extract import FileWords

WORDS_VERSION = 1
WORD_VECTORS = "words.faiss"
WORDS_SCHEMA = """
CREATE TABLE words (file_id INTEGER PRIMARY KEY REFERENCES files(id), path_words TEXT NOT NULL,
                    tag_words TEXT NOT NULL, tags TEXT NOT NULL);
CREATE VIRTUAL TABLE words_fts USING fts5(text, tokenize = 'porter unicode61 remove_diacritics 2');
"""


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
    """Read side: a file's words, BM25 over them (`bm25`: indexer.words.bm25), and their text vectors. `query`
    runs SQL under the snapshot reader's connection lock."""

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
        self.bm25 = Bm25(query, self.n_docs)

    def of(self, file_id: int) -> FileWords | None:
        rows = self._query("SELECT path_words, tag_words, tags FROM words WHERE file_id = ?", [file_id])
        if not rows:
            return None
        path, tags, fields = rows[0]
        return FileWords(tuple(path.split()), tuple(tags.split()), json.loads(fields))

    def worded(self, file_ids: Iterable[int]) -> set[int]:
        return {r[0] for r in select_in(self._query, "SELECT rowid FROM words_fts WHERE rowid IN ({marks})", file_ids)}

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
