"""The index directory: CURRENT names the live snapshot; snapshots are written aside, then swapped in.

INDEX_DIR/
  CURRENT                  name of the live snapshot (replaced atomically with os.replace)
  snapshots/<id>/          manifest.json, vectors.faiss, meta.sqlite
  errors.jsonl             skipped files with reasons, appended per run
  work/cache.sqlite        embeddings by content hash (see cache.py)
A crash at any point leaves CURRENT naming a complete snapshot (or none, before the first run).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from indexer.errors import IndexBuildError, IndexCorruptError, IndexNotFoundError
from models.atomic import atomic_write, fsync_dir

FORMAT_VERSION = 1
META_SCHEMA = """
CREATE TABLE files (
    id INTEGER PRIMARY KEY, path TEXT NOT NULL UNIQUE, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
    sha1 TEXT NOT NULL, duration REAL NOT NULL, sample_rate INTEGER NOT NULL, channels INTEGER NOT NULL
);
CREATE TABLE windows (id INTEGER PRIMARY KEY, file_id INTEGER NOT NULL REFERENCES files(id),
                      start REAL NOT NULL, "end" REAL NOT NULL);
CREATE INDEX windows_file ON windows(file_id);
"""


def current_snapshot(index_dir: Path) -> Path | None:
    marker = index_dir / "CURRENT"
    if not marker.is_file():
        return None
    snap = index_dir / "snapshots" / marker.read_text().strip()
    if not (snap / "manifest.json").is_file():
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
        manifest = json.loads((snapshot / "manifest.json").read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise IndexCorruptError(f"{snapshot}: unreadable manifest ({err})") from None
    if manifest.get("format") != FORMAT_VERSION:
        raise IndexCorruptError(f"{snapshot}: index format {manifest.get('format')!r}, expected {FORMAT_VERSION}")
    return manifest


def previous_files(index_dir: Path) -> dict[str, tuple[int, int, int, str]]:
    """path -> (file id, size, mtime_ns, sha1) of the live snapshot, to skip hashing unchanged files."""
    snap = current_snapshot(index_dir)
    if snap is None:
        return {}
    db = connect_readonly(snap / "meta.sqlite")
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


def new_index(dim: int, factory: str) -> faiss.Index:
    try:
        index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as err:
        raise IndexBuildError(f"invalid FAISS factory {factory!r}: {str(err).splitlines()[0]}") from None
    # try_extract_index_ivf returns the IndexIVF base class; without the downcast the check below never
    # matched and every PQ index spent about a minute on polysemous training.
    ivf = faiss.try_extract_index_ivf(index)
    ivf = faiss.downcast_index(ivf) if ivf is not None else None
    if isinstance(ivf, faiss.IndexIVFPQ):
        # Polysemous codes only help Hamming-filtered search, which we never use, and their training
        # takes minutes on a couple of cores.
        ivf.do_polysemous_training = False
    return index


def tune_for_search(index: faiss.Index, ef_search: int = 128, nprobe: int | None = None) -> faiss.Index:
    """Search-time knobs: FAISS defaults (HNSW efSearch 16, IVF nprobe 1) trade away most of the recall."""
    hnsw = getattr(faiss.downcast_index(index), "hnsw", None)
    if hnsw is not None:
        hnsw.efSearch = ef_search
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None:
        ivf.nprobe = nprobe or min(ivf.nlist, max(8, ivf.nlist // 16))
    return index


def train_if_needed(index: faiss.Index, sample: np.ndarray, factory: str) -> None:
    if index.is_trained:
        return
    ivf = faiss.try_extract_index_ivf(index)
    needed = max(ivf.nlist if ivf is not None else 1, 256 if "PQ" in factory else 1)
    if len(sample) < needed:
        raise IndexBuildError(
            f"FAISS {factory!r} needs at least {needed} vectors to train, the library gave {len(sample)}; "
            "use a flat index (the default) for small libraries"
        )
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(os.cpu_count() or 1)  # the service pins FAISS to one thread; training wants all
    try:
        index.train(np.ascontiguousarray(sample, dtype=np.float32))
    finally:
        faiss.omp_set_num_threads(threads)


class SnapshotWriter:
    """Builds one snapshot in a hidden directory; `commit()` moves it in place and flips CURRENT."""

    def __init__(self, index_dir: Path, dim: int, factory: str) -> None:
        self.index_dir = index_dir
        self.id = time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
        self.tmp = index_dir / "snapshots" / f".tmp-{self.id}"
        self.tmp.mkdir(parents=True)
        self.factory = factory
        self.index = new_index(dim, factory)
        ivf = faiss.try_extract_index_ivf(self.index)
        if ivf is not None:  # lets the service look a window's vector up by id (query by indexed clip)
            ivf.set_direct_map_type(faiss.DirectMap.Array)
        self.db = sqlite3.connect(str(self.tmp / "meta.sqlite"))
        self.db.executescript(META_SCHEMA)
        self.n_windows = 0

    def add_file(self, file_id: int, row: tuple, starts: np.ndarray, ends: np.ndarray) -> None:
        """row = (path, size, mtime_ns, sha1, duration, sample_rate, channels); window ids are sequential."""
        self.db.execute(
            "INSERT INTO files (id, path, size, mtime_ns, sha1, duration, sample_rate, channels) "
            "VALUES (?,?,?,?,?,?,?,?)",
            (file_id, *row),
        )
        first = self.n_windows
        self.db.executemany(
            'INSERT INTO windows (id, file_id, start, "end") VALUES (?, ?, ?, ?)',
            [(first + i, file_id, float(s), float(e)) for i, (s, e) in enumerate(zip(starts, ends, strict=True))],
        )
        self.n_windows += len(starts)

    def add_vectors(self, vectors: np.ndarray) -> None:
        self.index.add(np.ascontiguousarray(vectors, dtype=np.float32))

    def commit(self, manifest: dict[str, Any]) -> Path:
        if self.index.ntotal != self.n_windows:
            raise IndexBuildError(f"internal: {self.index.ntotal} vectors for {self.n_windows} windows")
        self.db.commit()
        self.db.close()
        faiss.write_index(self.index, str(self.tmp / "vectors.faiss"))
        manifest = {**manifest, "format": FORMAT_VERSION, "snapshot": self.id, "faiss": self.factory}
        atomic_write(self.tmp / "manifest.json", json.dumps(manifest, indent=2))
        fsync_dir(self.tmp)
        final = self.index_dir / "snapshots" / self.id
        os.replace(self.tmp, final)
        atomic_write(self.index_dir / "CURRENT", self.id)
        return final

    def abort(self) -> None:
        self.db.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


def prune_snapshots(index_dir: Path, keep: int = 2) -> None:
    """Keep the live snapshot and the one before it (a server may still be reading it); drop the rest."""
    snaps = index_dir / "snapshots"
    live = (index_dir / "CURRENT").read_text().strip()
    done = sorted((p for p in snaps.iterdir() if not p.name.startswith(".")), key=lambda p: p.name)
    for old in [p for p in done if p.name != live][: max(0, len(done) - keep)]:
        shutil.rmtree(old, ignore_errors=True)
    for tmp in snaps.glob(".tmp-*"):  # left by a crashed run
        shutil.rmtree(tmp, ignore_errors=True)
