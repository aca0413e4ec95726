"""The index format, owned here alone: directory layout, SQLite schema, manifest, snapshot writer and reader.

INDEX_DIR/
  CURRENT                  name of the live snapshot (replaced atomically with os.replace)
  snapshots/<id>/          manifest.json, vectors.faiss, meta.sqlite (+ words.faiss: audiosearch.indexer.words.store)
                           (+ vectors.npy: the full fp32 vectors, window id order, where vectors.faiss holds codes)
  errors.jsonl             skipped files with reasons, appended per run
  work/cache.sqlite        embeddings by content hash (audiosearch.indexer.cache), decode failures (.failures)
A crash at any point leaves CURRENT naming a complete snapshot (or none, before the first run). FAISS ids are
window ids (`windows.id`, sequential per snapshot); file ids stay stable across snapshots for unchanged paths
and are never reused (audiosearch.indexer.file_ids).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from audiosearch.core.atomic import atomic_write, fsync_dir
from audiosearch.indexer.errors import IndexBuildError, IndexCorruptError, IndexNotFoundError
from audiosearch.indexer.faiss_index import holds_exact, new_index, read_faiss, read_faiss_mapped
from audiosearch.indexer.row_file import RowFile
from audiosearch.indexer.sqlite import select_in
from audiosearch.indexer.words.extract import FileWords
from audiosearch.indexer.words.store import WORDS_VERSION, WordsReader, WordsWriter

FORMAT_VERSION = 1
MANIFEST, VECTORS, META = "manifest.json", "vectors.faiss", "meta.sqlite"
FULL_VECTORS = "vectors.npy"  # beside a compressed vectors.faiss: what its candidates are re-scored from
NPY_HEADER = 128  # bytes reserved for the .npy header, written once the number of vectors is known
META_SCHEMA = """
CREATE TABLE files (
    id INTEGER PRIMARY KEY, path TEXT NOT NULL UNIQUE, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
    sha1 TEXT NOT NULL, duration REAL NOT NULL, sample_rate INTEGER NOT NULL, channels INTEGER NOT NULL
);
CREATE TABLE windows (id INTEGER PRIMARY KEY, file_id INTEGER NOT NULL REFERENCES files(id),
                      start REAL NOT NULL, "end" REAL NOT NULL);
CREATE INDEX windows_file ON windows(file_id);
CREATE TABLE peaks (file_id INTEGER PRIMARY KEY REFERENCES files(id), data BLOB NOT NULL);
"""
# peaks: each file's waveform outline (audiosearch.indexer.peaks). Snapshots written before it have no such
# table; files whose peaks are unknown have no row. Readers treat both as "not stored".

FileRow = tuple[str, int, int, str, float, int, int]  # path, size, mtime_ns, sha1, duration, sample_rate, channels


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
class Clip:
    id: int
    path: str
    size: int
    duration: float
    sample_rate: int
    channels: int
    sha1: str
    windows: int


@dataclass(frozen=True)
class WindowRow:
    window_id: int
    file_id: int
    path: str
    start: float
    end: float
    duration: float


# -- the directory ----------------------------------------------------------------------------------------


def current_snapshot(index_dir: Path) -> Path | None:
    marker = index_dir / "CURRENT"
    if not marker.is_file():
        return None
    snap = index_dir / "snapshots" / marker.read_text().strip()
    if not (snap / MANIFEST).is_file():
        raise IndexCorruptError(f"{index_dir}: CURRENT names {snap.name}, which is missing or incomplete")
    return snap


def require_snapshot(index_dir: Path) -> Path:
    if not index_dir.is_dir():
        raise IndexNotFoundError(f"{index_dir}: no such index directory")
    snap = current_snapshot(index_dir)
    if snap is None:
        raise IndexNotFoundError(f"{index_dir}: no index yet (run `audiosearch index` first)")
    return snap


def read_manifest(snapshot: Path) -> dict[str, Any]:
    try:
        manifest = json.loads((snapshot / MANIFEST).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise IndexCorruptError(f"{snapshot}: unreadable manifest ({err})") from None
    if manifest.get("format") != FORMAT_VERSION:
        raise IndexCorruptError(f"{snapshot}: index format {manifest.get('format')!r}, expected {FORMAT_VERSION}")
    return manifest


def make_manifest(library: Path, model: Any, counts: dict[str, int], window_s: float, hop_s: float) -> dict:
    """What a snapshot records about itself (the writer adds format, snapshot id and FAISS factory)."""
    return {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "library": str(library),
        "model": {
            "name": model.config.name,
            "fingerprint": model.fingerprint,
            "dim": model.dim,
            "sample_rate": model.sample_rate,
            # where each part's weights came from (audiosearch.models.provenance): checkpoint, package, trained, ...
            "provenance": getattr(model, "provenance", None),
        },
        "window_seconds": window_s,
        "hop_seconds": hop_s,
        "counts": counts,
        "backend": type(model).__name__,  # SlimEncoder (numpy + onnxruntime) or DualEncoder (torch)
    }


# What makes two snapshots hold the same vectors: the manifest keys below and the files table.
IDENTITY = ("format", "library", "window_seconds", "hop_seconds", "faiss")


def unchanged_snapshot(
    index_dir: Path, files: dict[str, tuple[int, int, str]], manifest: dict[str, Any], factory: str
) -> dict[str, Any] | None:
    """The live snapshot's manifest when a rebuild would write the same snapshot again, else None.

    The same means: the same files (path -> size, mtime_ns, sha1; file ids follow paths, so they match too)
    with the same model fingerprint, library, window, hop, FAISS factory and format. The count of skipped
    files is not part of it: a file that fails to decode changes nothing that is served."""
    snap = current_snapshot(index_dir)
    if snap is None:
        return None
    live = read_manifest(snap)
    new = {**manifest, "format": FORMAT_VERSION, "faiss": factory}
    if any(live.get(k) != new.get(k) for k in IDENTITY):
        return None
    if live.get("model", {}).get("fingerprint") != new["model"]["fingerprint"]:
        return None
    if (live.get("words") or {}).get("version") != WORDS_VERSION:  # built before (these) words: add them
        return None
    old = {path: (size, mtime, sha1) for path, (_, size, mtime, sha1) in previous_files(index_dir).items()}
    return live if old == files else None


def previous_files(index_dir: Path) -> dict[str, tuple[int, int, int, str]]:
    """path -> (file id, size, mtime_ns, sha1) of the live snapshot, to skip hashing unchanged files."""
    snap = current_snapshot(index_dir)
    if snap is None:
        return {}
    db = connect_readonly(snap / META)
    try:
        rows = db.execute("SELECT path, id, size, mtime_ns, sha1 FROM files").fetchall()
    finally:
        db.close()
    return {r[0]: (r[1], r[2], r[3], r[4]) for r in rows}


def connect_readonly(path: Path) -> sqlite3.Connection:
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True, check_same_thread=False)
        db.execute("SELECT 1 FROM files LIMIT 1")
    except sqlite3.Error as err:
        raise IndexCorruptError(f"{path}: cannot read metadata ({err})") from None
    return db


def prune_snapshots(index_dir: Path, keep: int = 2) -> None:
    """Keep the live snapshot and the one before it (a server may still be reading it); drop the rest."""
    snaps = index_dir / "snapshots"
    live = (index_dir / "CURRENT").read_text().strip()
    # commit order, not name order: ids made within one second differ only in their random part
    done = sorted((p for p in snaps.iterdir() if not p.name.startswith(".")), key=_committed_at)
    for old in [p for p in done if p.name != live][: max(0, len(done) - keep)]:
        shutil.rmtree(old, ignore_errors=True)
    for tmp in snaps.glob(".tmp-*"):  # left by a crashed run
        shutil.rmtree(tmp, ignore_errors=True)


def _committed_at(snapshot: Path) -> tuple[int, str]:
    """When the snapshot's manifest was written (its last step before CURRENT flips), then its name."""
    try:
        return (snapshot / MANIFEST).stat().st_mtime_ns, snapshot.name
    except OSError:  # incomplete: the oldest of all
        return 0, snapshot.name


# -- writing ----------------------------------------------------------------------------------------------


class SnapshotWriter:
    """Builds one snapshot in a hidden directory; `commit()` moves it in place and flips CURRENT."""

    def __init__(self, index_dir: Path, dim: int, factory: str) -> None:
        self.index_dir = index_dir
        self.id = time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
        self.factory = factory
        self.index = new_index(dim, factory)  # before any folder: a bad factory leaves nothing behind
        self.tmp = index_dir / "snapshots" / f".tmp-{self.id}"
        self.tmp.mkdir(parents=True)
        # A compressed index (PQ/SQ codes) keeps the full vectors beside it, for exact scores; the others hold them.
        self.full = None if holds_exact(self.index) else open(self.tmp / FULL_VECTORS, "wb")  # noqa: SIM115
        if self.full is not None:
            self.full.write(b"\0" * NPY_HEADER)
        ivf = faiss.try_extract_index_ivf(self.index)
        if ivf is not None:  # index.reconstruct(id) works (8 bytes a window), full vectors stored or not
            ivf.set_direct_map_type(faiss.DirectMap.Array)
        self.db = sqlite3.connect(str(self.tmp / META))
        self.db.executescript(META_SCHEMA)
        self.words = WordsWriter(self.db, self.tmp, dim)
        self.n_windows = 0

    def add_file(self, file_id: int, row: FileRow, starts: np.ndarray, ends: np.ndarray) -> None:
        """One file and its windows; window ids are sequential, in the order vectors are added."""
        self.add_files([(file_id, row, starts, ends)])

    def add_files(self, files: list[tuple[int, FileRow, np.ndarray, np.ndarray]]) -> None:
        self.db.executemany(
            "INSERT INTO files (id, path, size, mtime_ns, sha1, duration, sample_rate, channels) "
            "VALUES (?,?,?,?,?,?,?,?)",
            [(file_id, *row) for file_id, row, _, _ in files],
        )
        windows = []
        for file_id, _, starts, ends in files:
            for s, e in zip(starts, ends, strict=True):
                windows.append((self.n_windows, file_id, float(s), float(e)))
                self.n_windows += 1
        self.db.executemany('INSERT INTO windows (id, file_id, start, "end") VALUES (?, ?, ?, ?)', windows)

    def add_peaks(self, rows: list[tuple[int, bytes]]) -> None:
        """(file id, encoded peaks) of files already added."""
        self.db.executemany("INSERT OR REPLACE INTO peaks (file_id, data) VALUES (?, ?)", rows)

    def copy_peaks(self, previous: Path | None) -> int:
        """Give files still without peaks those of the same content (sha1) in a previous snapshot's meta.sqlite,
        in one statement (nothing is held in memory). Returns how many were copied."""
        if previous is None or not (previous / META).is_file():
            return 0
        self.db.commit()  # ATTACH and DETACH need no open transaction
        self.db.execute("ATTACH DATABASE ? AS prev", [str(previous / META)])
        try:
            has = self.db.execute("SELECT 1 FROM prev.sqlite_master WHERE type = 'table' AND name = 'peaks'")
            if has.fetchone() is None:
                return 0
            cur = self.db.execute(
                "INSERT OR IGNORE INTO peaks (file_id, data) SELECT f.id, p.data FROM files f "
                "JOIN prev.files o ON o.sha1 = f.sha1 JOIN prev.peaks p ON p.file_id = o.id"
            )
            return cur.rowcount
        finally:
            self.db.commit()
            self.db.execute("DETACH DATABASE prev")

    def add_vectors(self, vectors: np.ndarray) -> None:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.index.add(vectors)
        if self.full is not None:
            self.full.write(vectors.tobytes())

    def add_words(self, rows: list[tuple[int, FileWords]], vectors: np.ndarray) -> None:
        """The words of files already added, and the text vectors of those that have any (in row order)."""
        self.words.add(rows, vectors)

    def commit(self, manifest: dict[str, Any]) -> Path:
        if self.index.ntotal != self.n_windows:
            raise IndexBuildError(f"internal: {self.index.ntotal} vectors for {self.n_windows} windows")
        words = self.words.finish()
        self.db.commit()
        self.db.close()
        faiss.write_index(self.index, str(self.tmp / VECTORS))
        if self.full is not None:
            self._finish_full()
        manifest = {**manifest, "format": FORMAT_VERSION, "snapshot": self.id, "faiss": self.factory, "words": words}
        atomic_write(self.tmp / MANIFEST, json.dumps(manifest, indent=2))
        fsync_dir(self.tmp)
        final = self.index_dir / "snapshots" / self.id
        os.replace(self.tmp, final)
        atomic_write(self.index_dir / "CURRENT", self.id)
        return final

    def _finish_full(self) -> None:
        """Writes the .npy header (shape known now) into the space reserved before the vectors."""
        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(
            header, {"descr": "<f4", "fortran_order": False, "shape": (self.index.ntotal, self.index.d)}
        )
        if len(header.getvalue()) != NPY_HEADER:  # numpy pads it to 128 bytes for any 2-d shape (room to grow)
            raise IndexBuildError(f"internal: a .npy header of {len(header.getvalue())} bytes")
        self.full.seek(0)
        self.full.write(header.getvalue())
        self.full.flush()
        os.fsync(self.full.fileno())
        self.full.close()

    def abort(self) -> None:
        if self.full is not None:
            self.full.close()
        self.db.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


# -- reading ----------------------------------------------------------------------------------------------


class SnapshotReader:
    """The live snapshot of an index directory: manifest, FAISS index and the metadata rows (thread-safe).

    mmap: map the vectors from the snapshot file instead of reading them into RAM (AUDIOSEARCH_MMAP)."""

    def __init__(self, index_dir: Path, mmap: bool = False) -> None:
        self.index_dir = Path(index_dir)
        self.snapshot = require_snapshot(self.index_dir)
        self.manifest = read_manifest(self.snapshot)
        self.library = Path(self.manifest["library"])
        self.index, self.mapped = read_faiss_mapped(self.snapshot / VECTORS, mmap)
        # A compressed index's full vectors: rows read from disk on demand (its RAM budget is for the codes).
        full = self.snapshot / FULL_VECTORS
        self.vectors = RowFile(full) if full.is_file() else None
        if self.vectors is not None and self.vectors.shape != (self.index.ntotal, self.index.d):
            raise IndexCorruptError(f"{self.snapshot}: {FULL_VECTORS} holds {self.vectors.shape}, not the index's")
        self.db = connect_readonly(self.snapshot / META)
        self._lock = threading.Lock()  # one sqlite3 connection; FAISS searches need no lock
        self.n_files = self._one("SELECT COUNT(*) FROM files")[0]
        self.has_peaks = self._one("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'peaks'") is not None
        if self.index.ntotal != self._one("SELECT COUNT(*) FROM windows")[0]:
            raise IndexCorruptError(f"{self.snapshot}: vector and window counts differ")
        # Snapshots written before words were indexed have none: they are searched by audio alone.
        self.words = (
            WordsReader(self.snapshot, self._all, lambda p: read_faiss(p, mmap)) if "words" in self.manifest else None
        )

    @property
    def fingerprint(self) -> str:
        return self.manifest["model"]["fingerprint"]

    def count(self, filters: Filters) -> int:
        if not filters.active:
            return self.n_files
        where, args = filters.sql()
        return self._one(f"SELECT COUNT(*) FROM files WHERE {where}", args)[0]

    def windows(self, window_ids: list[int], filters: Filters) -> dict[int, WindowRow]:
        """The rows of these windows whose files pass `filters`, by window id."""
        where, args = filters.sql()
        # A sparse filter with a deep offset can ask for hundreds of thousands of windows: select_in chunks them.
        sql = (
            'SELECT w.id, f.id, f.path, w.start, w."end", f.duration FROM windows w JOIN files f '
            f"ON f.id = w.file_id WHERE w.id IN ({{marks}}) AND {where}"
        )
        return {r[0]: WindowRow(*r) for r in select_in(self._all, sql, window_ids, after=args)}

    def files(self, file_ids: list[int], filters: Filters) -> dict[int, tuple[str, float]]:
        """id -> (path, duration) of those of these files that pass `filters`."""
        where, args = filters.sql()
        sql = f"SELECT id, path, duration FROM files WHERE id IN ({{marks}}) AND {where}"
        return {r[0]: (r[1], r[2]) for r in select_in(self._all, sql, file_ids, after=args)}

    def file_ids(self) -> list[int]:
        """Every file's id, ascending (ids are stable across snapshots, so not 1..n_files)."""
        return [r[0] for r in self._all("SELECT id FROM files ORDER BY id", [])]

    def file_windows(self, file_ids: list[int]) -> dict[int, list[tuple[int, float, float]]]:
        """file id -> its windows as (window id, start, end), in order."""
        out: dict[int, list[tuple[int, float, float]]] = {}
        sql = 'SELECT file_id, id, start, "end" FROM windows WHERE file_id IN ({marks}) ORDER BY id'
        for fid, wid, start, end in select_in(self._all, sql, file_ids):  # a file's windows are in one chunk
            out.setdefault(fid, []).append((wid, start, end))
        return out

    def count_worded(self, filters: Filters) -> int:
        """Files that pass `filters` and have words (what a text-only search ranks)."""
        where, args = filters.sql()
        sql = f"SELECT COUNT(*) FROM files WHERE id IN (SELECT rowid FROM words_fts) AND {where}"
        return self._one(sql, args)[0] if self.words is not None else 0

    def clip(self, file_id: int) -> Clip | None:
        row = self._one(
            "SELECT f.id, f.path, f.size, f.duration, f.sample_rate, f.channels, f.sha1, COUNT(w.id) "
            "FROM files f JOIN windows w ON w.file_id = f.id WHERE f.id = ? GROUP BY f.id",
            [file_id],
        )
        return Clip(*row) if row and row[0] is not None else None

    def file_id(self, path: str) -> int | None:
        """The id of the file at `path` (relative to the library, as the index stores it); None if not indexed."""
        row = self._one("SELECT id FROM files WHERE path = ?", [path])
        return int(row[0]) if row else None

    def peaks(self, file_id: int) -> bytes | None:
        """The file's stored peaks (audiosearch.indexer.peaks), or None when this snapshot has none for it."""
        if not self.has_peaks:
            return None
        row = self._one("SELECT data FROM peaks WHERE file_id = ?", [file_id])
        return bytes(row[0]) if row else None

    def window_vectors(self, file_id: int) -> np.ndarray:
        """(windows, dim) vectors of one file, in window order."""
        ids = [r[0] for r in self._all("SELECT id FROM windows WHERE file_id = ? ORDER BY id", [file_id])]
        return self.vectors_of(np.array(ids, np.int64))

    def vectors_of(self, window_ids: np.ndarray) -> np.ndarray:
        """(len(ids), dim) float32 stored vectors of these windows: from vectors.npy beside a compressed index,
        else from the index itself (which holds them exactly)."""
        if len(window_ids) == 0:
            return np.zeros((0, self.index.d), np.float32)
        if self.vectors is not None:
            return np.asarray(self.vectors[window_ids], dtype=np.float32)
        return self.index.reconstruct_batch(np.ascontiguousarray(window_ids, dtype=np.int64))

    def memory(self) -> dict[str, int]:
        """Bytes of the audio index's vectors, codes and graph in RAM and memory-mapped (the FAISS file's size
        stands for what it holds); `mapped_bytes` is what stays on disk, read on demand (vectors.npy always is)."""
        size = (self.snapshot / VECTORS).stat().st_size
        full = (self.snapshot / FULL_VECTORS).stat().st_size if self.vectors is not None else 0
        return {"ram_bytes": 0 if self.mapped else size, "mapped_bytes": (size if self.mapped else 0) + full}

    def close(self) -> None:
        self.db.close()
        if self.vectors is not None:
            self.vectors.close()

    def _one(self, sql: str, args: list[Any] | None = None) -> Any:
        with self._lock:
            return self.db.execute(sql, args or []).fetchone()

    def _all(self, sql: str, args: list[Any]) -> list[Any]:
        with self._lock:
            return self.db.execute(sql, args).fetchall()
