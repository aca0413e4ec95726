"""Embedding cache in INDEX_DIR/work/cache.sqlite: what makes runs incremental and resumable.

Every embedded file is committed here (vectors and windows, keyed by content hash and model) as soon
as its batch finishes, so a killed run loses at most one batch, and unchanged or renamed files are
never embedded twice. Snapshots are assembled from this cache.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from audiosearch.indexer.sqlite import open_work_db, select_in, transaction

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
        self.db = open_work_db(path)
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

    def n_windows(self, hashes: Iterable[str]) -> dict[str, int]:
        """sha1 -> windows cached for that content, without reading the vectors."""
        sql = "SELECT key, n_windows FROM files WHERE key IN ({marks})"
        rows = select_in(lambda q, a: self.db.execute(q, a).fetchall(), sql, [self.key(h) for h in hashes])
        return {key[: -len(self.suffix)]: n for key, n in rows}

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
        return transaction(self.db)
