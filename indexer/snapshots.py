"""The index directory around its snapshots: the layout, which snapshot is live (CURRENT), manifests, whether a
rebuild would write the live one again, and pruning. What a snapshot holds is audiosearch.indexer.store's.

INDEX_DIR/
  CURRENT                  name of the live snapshot (replaced atomically with os.replace)
  snapshots/<id>/          manifest.json, vectors.faiss, meta.sqlite (+ words.faiss: audiosearch.indexer.words.store)
                           (+ vectors.npy: the full fp32 vectors, window id order, where vectors.faiss holds codes)
  errors.jsonl             skipped files with reasons, appended per run
  work/cache.sqlite        embeddings by content hash (audiosearch.indexer.cache), decode failures (.failures)
A crash at any point leaves CURRENT naming a complete snapshot (or none, before the first run).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

from audiosearch.indexer.errors import IndexCorruptError, IndexNotFoundError
from audiosearch.indexer.sqlite import connect_readonly
from audiosearch.indexer.words.store import WORDS_VERSION

FORMAT_VERSION = 1
MANIFEST, VECTORS, META = "manifest.json", "vectors.faiss", "meta.sqlite"
FULL_VECTORS = "vectors.npy"  # beside a compressed vectors.faiss: what its candidates are re-scored from


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
