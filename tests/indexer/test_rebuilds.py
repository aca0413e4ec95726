"""A rebuild that changed nothing writes no snapshot (so a watching service does not swap); one that changed
anything served does. And reads that ask for more windows than SQLite takes parameters in one statement."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from audiosearch.indexer import Filters, IndexOptions, build_index
from audiosearch.indexer.store import SnapshotReader, SnapshotWriter
from tests.conftest import copy_clips

FAST = IndexOptions(workers=0, progress=False)


def state(index_dir: Path) -> dict[str, int | str]:
    """CURRENT and every file under snapshots/ with its mtime: what a rebuild must leave untouched."""
    files = {str(p.relative_to(index_dir)): p.stat().st_mtime_ns for p in (index_dir / "snapshots").rglob("*")}
    return {"CURRENT": (index_dir / "CURRENT").read_text(), **files}


def test_a_rebuild_that_changed_nothing_writes_nothing(indexed, lite_model) -> None:
    lib, idx = indexed
    before = state(idx)
    (lib / "broken.wav").write_bytes(b"RIFF....WAVE")  # a new file that cannot be indexed changes nothing served
    report = build_index(lib, idx, lite_model, FAST)
    assert report.unchanged and report.snapshot == before["CURRENT"]
    assert (report.files, report.windows, report.embedded, report.skipped) == (4, 4, 0, 1)
    assert f"nothing changed, snapshot {before['CURRENT']} kept" in report.summary()
    assert state(idx) == before


@pytest.mark.parametrize("change", ["touch", "add", "remove", "faiss", "window"])
def test_a_rebuild_that_changed_something_writes_a_snapshot(indexed, shared_data, lite_model, change: str) -> None:
    lib, idx = indexed
    before = (idx / "CURRENT").read_text()
    opts = FAST
    if change == "touch":  # same content, new mtime: recorded, so the next run need not hash it again
        clip = next((lib / "rain").iterdir())
        os.utime(clip, ns=(clip.stat().st_atime_ns, clip.stat().st_mtime_ns + 10**9))
    elif change == "add":
        copy_clips(shared_data, lib, {"rooster": 1})
    elif change == "remove":
        next((lib / "rain").iterdir()).unlink()
    elif change == "faiss":
        opts = IndexOptions(workers=0, progress=False, faiss_factory="HNSW32")
    elif change == "window":
        opts = IndexOptions(workers=0, progress=False, window_s=5.0)
    report = build_index(lib, idx, lite_model, opts)
    assert not report.unchanged and report.snapshot != before
    assert (idx / "CURRENT").read_text() == report.snapshot


def test_windows_of_more_ids_than_one_statement_takes(tmp_path) -> None:
    """SQLite caps a statement's parameters (250000 in this build, 32766 in many); a search whose fetch grows
    to the whole index (a sparse filter with a deep offset) asks for every window id at once."""
    n, dim = 260_000, 4
    writer = SnapshotWriter(tmp_path, dim, "Flat")
    starts = np.arange(n, dtype=np.float64)
    writer.add_files(
        [
            (1, ("a.wav", 1, 1, "0" * 40, float(n), 16000, 1), starts[: n // 2], starts[: n // 2] + 1),
            (2, ("b/c.wav", 1, 1, "1" * 40, float(n), 16000, 1), starts[n // 2 :], starts[n // 2 :] + 1),
        ]
    )
    writer.add_vectors(np.eye(dim, dtype=np.float32)[np.arange(n) % dim])
    writer.commit({"library": str(tmp_path), "model": {"fingerprint": "x"}, "counts": {}})
    reader = SnapshotReader(tmp_path)
    assert n > 250_000  # more than this build of SQLite takes in one statement
    rows = reader.windows(list(range(n)), Filters(path_prefix="b/"))
    assert len(rows) == n // 2 and rows[n - 1].path == "b/c.wav" and rows[n // 2].start == n // 2
