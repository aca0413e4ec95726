"""Snapshots written through the store's public writer from known vectors (no model, no audio), and an index
turned back into what the indexer wrote before file words existed."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from audiosearch.indexer.faiss_index import train_if_needed
from audiosearch.indexer.store import SnapshotWriter

WINDOW_S = 2.0


@dataclass
class File:
    path: str
    vectors: np.ndarray  # (windows, dim): window i covers [2i, 2i + 2) seconds, the last cut at `duration`
    file_id: int = 0  # 0: its place in the list, from 1
    sample_rate: int = 16000
    channels: int = 1

    @property
    def duration(self) -> float:
        return WINDOW_S * (len(self.vectors) - 1) + 1.5


def manifest(fingerprint: str = "test-model-0000", dim: int = 8, library: str = "/library") -> dict:
    return {"library": library, "model": {"name": "test-model", "fingerprint": fingerprint, "dim": dim}}


def write_snapshot(
    index_dir: Path, files: list[File], factory: str = "Flat", fingerprint: str = "test-model-0000"
) -> Path:
    """One committed snapshot holding `files` (window ids in list order); returns its directory."""
    dim = files[0].vectors.shape[1]
    writer = SnapshotWriter(index_dir, dim, factory)
    train_if_needed(writer.index, np.concatenate([f.vectors for f in files]), factory)
    for n, f in enumerate(files, start=1):
        starts = WINDOW_S * np.arange(len(f.vectors))
        ends = np.minimum(starts + WINDOW_S, f.duration)
        row = (f.path, 1000 + n, 10**18 + n, f"sha1-{n:04d}", f.duration, f.sample_rate, f.channels)
        writer.add_file(f.file_id or n, row, starts, ends)
        writer.add_vectors(f.vectors)
    return writer.commit(manifest(fingerprint, dim))


def unit(*rows: list[float], dim: int = 8) -> np.ndarray:
    """Rows padded with zeros to `dim` and scaled to unit length."""
    out = np.zeros((len(rows), dim), dtype=np.float32)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def strip_words(index_dir: Path, cache: bool = False) -> None:
    """The live snapshot as written before file words were indexed (no words tables, no words.faiss, no manifest
    entry); with `cache`, the work cache from before them too."""
    snap = index_dir / "snapshots" / (index_dir / "CURRENT").read_text().strip()
    manifest = json.loads((snap / "manifest.json").read_text())
    del manifest["words"]
    (snap / "manifest.json").write_text(json.dumps(manifest))
    (snap / "words.faiss").unlink()
    with sqlite3.connect(snap / "meta.sqlite") as db:
        db.executescript("DROP TABLE words; DROP TABLE words_fts;")
    if cache:
        with sqlite3.connect(index_dir / "work" / "cache.sqlite") as db:
            db.executescript("DROP TABLE tags; DROP TABLE text_vectors;")
