"""The words' part of the work cache (INDEX_DIR/work/cache.sqlite, beside the embedding cache of indexer.cache):
tags by content hash and text vectors by text and model."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from audiosearch.indexer.sqlite import open_work_db, select_in, transaction

WORDS_SCHEMA = """
CREATE TABLE IF NOT EXISTS tags (key TEXT PRIMARY KEY, fields TEXT NOT NULL);        -- sha1 | tag reader version
CREATE TABLE IF NOT EXISTS text_vectors (key TEXT PRIMARY KEY, vec BLOB NOT NULL);   -- sha1(text) | model fingerprint
"""


class WordCache:
    """Tags by content hash and text vectors by text, in the same cache file: a rerun reads no tags of unchanged
    files and encodes no text twice (a renamed file re-encodes only its new words)."""

    def __init__(self, path: Path, model_fingerprint: str, tags_version: int) -> None:
        self.db = open_work_db(path)
        self.db.executescript(WORDS_SCHEMA)
        self.tag_suffix, self.vec_suffix = f"|{tags_version}", f"|{model_fingerprint}"

    def tags(self, sha1s: Iterable[str]) -> dict[str, dict[str, str]]:
        rows = select_in(
            self._query, "SELECT key, fields FROM tags WHERE key IN ({marks})", [h + self.tag_suffix for h in sha1s]
        )
        return {k[: -len(self.tag_suffix)]: json.loads(f) for k, f in rows}

    def put_tags(self, items: dict[str, dict[str, str]]) -> None:
        with transaction(self.db):
            self.db.executemany(
                "INSERT OR REPLACE INTO tags (key, fields) VALUES (?, ?)",
                [(h + self.tag_suffix, json.dumps(t, ensure_ascii=False)) for h, t in items.items()],
            )

    def vectors(self, texts: Iterable[str]) -> dict[str, np.ndarray]:
        keys = {self._text_key(t): t for t in texts}
        rows = select_in(self._query, "SELECT key, vec FROM text_vectors WHERE key IN ({marks})", keys)
        return {keys[k]: np.frombuffer(v, dtype=np.float32) for k, v in rows}

    def put_vectors(self, texts: list[str], vectors: np.ndarray) -> None:
        vecs = np.ascontiguousarray(vectors, dtype=np.float32)
        with transaction(self.db):
            self.db.executemany(
                "INSERT OR REPLACE INTO text_vectors (key, vec) VALUES (?, ?)",
                [(self._text_key(t), v.tobytes()) for t, v in zip(texts, vecs, strict=True)],
            )

    def prune(self, sha1s: Iterable[str], texts: Iterable[str]) -> None:
        """Drop tags of contents and vectors (of this model) of texts that the last snapshot no longer uses."""
        keep_tags = {h + self.tag_suffix for h in sha1s}
        keep_vecs = {self._text_key(t) for t in texts}
        stale_tags = [(k,) for (k,) in self.db.execute("SELECT key FROM tags") if k not in keep_tags]
        mine = self.db.execute("SELECT key FROM text_vectors WHERE key LIKE ?", (f"%{self.vec_suffix}",))
        stale_vecs = [(k,) for (k,) in mine if k not in keep_vecs]
        with transaction(self.db):
            self.db.executemany("DELETE FROM tags WHERE key = ?", stale_tags)
            self.db.executemany("DELETE FROM text_vectors WHERE key = ?", stale_vecs)

    def close(self) -> None:
        self.db.close()

    def _query(self, sql: str, args: list[Any]) -> list[Any]:
        return self.db.execute(sql, args).fetchall()

    def _text_key(self, text: str) -> str:
        return hashlib.sha1(text.encode("utf-8")).hexdigest() + self.vec_suffix
