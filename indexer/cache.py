"""Embedding cache in INDEX_DIR/work/cache.sqlite: what makes runs incremental and resumable.

Every embedded file is committed here (vectors and windows, keyed by content hash and model) as soon
as its batch finishes, so a killed run loses at most one batch, and unchanged or renamed files are
never embedded twice. Snapshots are assembled from this cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    key TEXT PRIMARY KEY,          -- sha1 | model fingerprint | window | hop
    duration REAL NOT NULL, sample_rate INTEGER NOT NULL, channels INTEGER NOT NULL,
    n_windows INTEGER NOT NULL     -- caches made before may also hold an unused column `used` (default 0)
);
CREATE TABLE IF NOT EXISTS windows (
    key TEXT NOT NULL, idx INTEGER NOT NULL, start REAL NOT NULL, "end" REAL NOT NULL, vec BLOB NOT NULL,
    PRIMARY KEY (key, idx)
);
"""


@dataclass(frozen=True)
class CachedFile:
    duration: float
    sample_rate: int
    channels: int
    starts: np.ndarray
    ends: np.ndarray
    vectors: np.ndarray  # (n_windows, dim) float32


class EmbeddingCache:
    def __init__(self, path: Path, model_fingerprint: str, window_s: float, hop_s: float) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(path), isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)
        self.window_s, self.hop_s = window_s, hop_s
        self.suffix = self._suffix(model_fingerprint)

    def _suffix(self, fingerprint: str) -> str:
        return f"|{fingerprint}|{self.window_s:g}|{self.hop_s:g}"

    def key(self, sha1: str) -> str:
        return sha1 + self.suffix

    def done_hashes(self) -> set[str]:
        return {k[: -len(self.suffix)] for k in self._keys(self.suffix)}

    def _keys(self, suffix: str) -> list[str]:
        """Keys ending in `suffix`, compared exactly (LIKE would read '_' and '%' in a model name as wildcards)."""
        sql = "SELECT key FROM files WHERE substr(key, -?) = ?"
        return [k for (k,) in self.db.execute(sql, (len(suffix), suffix)).fetchall()]

    def put(self, sha1: str, duration: float, sr: int, channels: int, starts, ends, vectors: np.ndarray) -> None:
        """One file, in one transaction: either all its windows are cached or none."""
        key = self.key(sha1)
        vecs = np.ascontiguousarray(vectors, dtype=np.float32)
        with self._transaction():
            self.db.execute("DELETE FROM windows WHERE key = ?", (key,))
            self.db.executemany(
                'INSERT INTO windows (key, idx, start, "end", vec) VALUES (?, ?, ?, ?, ?)',
                [
                    (key, i, float(s), float(e), vecs[i].tobytes())
                    for i, (s, e) in enumerate(zip(starts, ends, strict=True))
                ],
            )
            self.db.execute(
                "INSERT OR REPLACE INTO files (key, duration, sample_rate, channels, n_windows) VALUES (?,?,?,?,?)",
                (key, duration, sr, channels, len(vecs)),
            )

    def get(self, sha1: str) -> CachedFile:
        return self._get(self.key(sha1))

    def _get(self, key: str) -> CachedFile:
        row = self.db.execute("SELECT duration, sample_rate, channels FROM files WHERE key = ?", (key,)).fetchone()
        if row is None:
            raise KeyError(f"not in the embedding cache: {key}")
        duration, sr, channels = row
        rows = self.db.execute('SELECT start, "end", vec FROM windows WHERE key = ? ORDER BY idx', (key,)).fetchall()
        vecs = np.stack([np.frombuffer(r[2], dtype=np.float32) for r in rows])
        return CachedFile(duration, sr, channels, np.array([r[0] for r in rows]), np.array([r[1] for r in rows]), vecs)

    def adopt_padded(self, old_fingerprint: str, dim: int) -> int:
        """Take over what an earlier fingerprint of this model cached with its vectors zero-padded (lite before
        vectors had a dimension per profile): the first `dim` columns are these vectors, so no file is embedded
        again. Entries with anything but zeros past `dim` are left alone. Returns how many files were taken."""
        old = self._suffix(old_fingerprint)
        done, taken = self.done_hashes(), 0
        for key in self._keys(old):
            sha1 = key[: -len(old)]
            if sha1 in done:
                continue
            c = self._get(key)
            if c.vectors.shape[1] > dim and not np.any(c.vectors[:, dim:]):
                self.put(sha1, c.duration, c.sample_rate, c.channels, c.starts, c.ends, c.vectors[:, :dim])
                taken += 1
        return taken

    def prune(self, keep: Iterable[str]) -> int:
        """Drop entries of this model/window setting that no snapshot file uses any more."""
        keep_keys = {self.key(h) for h in keep}
        stale = [k for k in (self.key(h) for h in self.done_hashes()) if k not in keep_keys]
        with self._transaction():
            for k in stale:
                self.db.execute("DELETE FROM windows WHERE key = ?", (k,))
                self.db.execute("DELETE FROM files WHERE key = ?", (k,))
        return len(stale)

    def drop_fingerprint(self, fingerprint: str) -> None:
        """Forget everything cached for another model fingerprint (at these window settings)."""
        keys = self._keys(self._suffix(fingerprint))
        with self._transaction():
            for k in keys:
                self.db.execute("DELETE FROM windows WHERE key = ?", (k,))
                self.db.execute("DELETE FROM files WHERE key = ?", (k,))

    def close(self) -> None:
        self.db.close()

    def _transaction(self) -> contextlib.AbstractContextManager[None]:
        return _transaction(self.db)


WORDS_SCHEMA = """
CREATE TABLE IF NOT EXISTS tags (key TEXT PRIMARY KEY, fields TEXT NOT NULL);        -- sha1 | tag reader version
CREATE TABLE IF NOT EXISTS text_vectors (key TEXT PRIMARY KEY, vec BLOB NOT NULL);   -- sha1(text) | model fingerprint
"""


class WordCache:
    """Tags by content hash and text vectors by text, in the same cache file: a rerun reads no tags of unchanged
    files and encodes no text twice (a renamed file re-encodes only its new words)."""

    def __init__(self, path: Path, model_fingerprint: str, tags_version: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(path), isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(WORDS_SCHEMA)
        self.tag_suffix, self.vec_suffix = f"|{tags_version}", f"|{model_fingerprint}"

    def tags(self, sha1s: Iterable[str]) -> dict[str, dict[str, str]]:
        out = {}
        for chunk in _chunks([h + self.tag_suffix for h in sha1s]):
            marks = ",".join("?" * len(chunk))
            rows = self.db.execute(f"SELECT key, fields FROM tags WHERE key IN ({marks})", chunk)
            out.update({k[: -len(self.tag_suffix)]: json.loads(f) for k, f in rows})
        return out

    def put_tags(self, items: dict[str, dict[str, str]]) -> None:
        with _transaction(self.db):
            self.db.executemany(
                "INSERT OR REPLACE INTO tags (key, fields) VALUES (?, ?)",
                [(h + self.tag_suffix, json.dumps(t, ensure_ascii=False)) for h, t in items.items()],
            )

    def vectors(self, texts: Iterable[str]) -> dict[str, np.ndarray]:
        keys = {self._text_key(t): t for t in texts}
        out = {}
        for chunk in _chunks(list(keys)):
            marks = ",".join("?" * len(chunk))
            rows = self.db.execute(f"SELECT key, vec FROM text_vectors WHERE key IN ({marks})", chunk)
            out.update({keys[k]: np.frombuffer(v, dtype=np.float32) for k, v in rows})
        return out

    def put_vectors(self, texts: list[str], vectors: np.ndarray) -> None:
        vecs = np.ascontiguousarray(vectors, dtype=np.float32)
        with _transaction(self.db):
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
        with _transaction(self.db):
            self.db.executemany("DELETE FROM tags WHERE key = ?", stale_tags)
            self.db.executemany("DELETE FROM text_vectors WHERE key = ?", stale_vecs)

    def close(self) -> None:
        self.db.close()

    def _text_key(self, text: str) -> str:
        return hashlib.sha1(text.encode("utf-8")).hexdigest() + self.vec_suffix


def _chunks(items: list[str], size: int = 500) -> Iterator[list[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


@contextlib.contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    db.execute("BEGIN")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
