"""The index format (indexer/store.py): writer and reader round trip, filters, the CURRENT flip, crashes,
pruning, corrupt snapshots and read-only use. Known vectors, no model: each test runs in milliseconds."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from audiosearch.indexer.errors import IndexBuildError, IndexCorruptError, IndexNotFoundError
from audiosearch.indexer.faiss_index import train_if_needed
from audiosearch.indexer.snapshots import previous_files, prune_snapshots
from audiosearch.indexer.store import Clip, Filters, SnapshotReader, SnapshotWriter, WindowRow
from audiosearch.indexer.words.extract import FileWords
from tests.conftest import REPO
from tests.indexer.snapshots import File, manifest, unit, write_snapshot

FILES = [
    File("dogs/a.wav", unit([1], [0, 1])),
    File("dogs/b.wav", unit([0, 0, 1])),
    File("rain/c.wav", unit([0, 0, 0, 1], [1, 1], [0, 1, 1]), sample_rate=44100, channels=2),
]


@pytest.fixture()
def index(tmp_path: Path) -> Path:
    write_snapshot(tmp_path / "idx", FILES)
    return tmp_path / "idx"


def _snapshots(index_dir: Path) -> set[str]:
    return {p.name for p in (index_dir / "snapshots").iterdir()}


def test_round_trip_of_files_windows_vectors_and_manifest(index: Path) -> None:
    reader = SnapshotReader(index)
    assert reader.snapshot.name == (index / "CURRENT").read_text() and _snapshots(index) == {reader.snapshot.name}
    m = reader.manifest
    assert (m["format"], m["snapshot"], m["faiss"]) == (1, reader.snapshot.name, "Flat")
    assert reader.fingerprint == "test-model-0000" and reader.library == Path("/library")
    assert reader.n_files == reader.count(Filters()) == 3 and reader.index.ntotal == 6
    rows = reader.windows(list(range(6)), Filters())
    assert rows[0] == WindowRow(0, 1, "dogs/a.wav", 0.0, 2.0, 3.5)
    assert rows[1] == WindowRow(1, 1, "dogs/a.wav", 2.0, 3.5, 3.5)
    assert rows[2] == WindowRow(2, 2, "dogs/b.wav", 0.0, 1.5, 1.5)
    assert [rows[i].file_id for i in range(3, 6)] == [3, 3, 3] and rows[5].end == 5.5
    assert reader.clip(3) == Clip(3, "rain/c.wav", 1003, 5.5, 44100, 2, "sha1-0003", 3)
    assert reader.clip(99) is None
    for n, f in enumerate(FILES, start=1):
        np.testing.assert_array_equal(reader.window_vectors(n), f.vectors)
    assert reader.window_vectors(99).shape == (0, 8)
    assert previous_files(index) == {f.path: (n, 1000 + n, 10**18 + n, f"sha1-{n:04d}") for n, f in enumerate(FILES, 1)}
    reader.close()


@pytest.mark.parametrize("factory", ["IVF2,Flat", "HNSW8"])
def test_vectors_by_id_from_approximate_indexes(tmp_path: Path, factory: str) -> None:
    files = [File(f"f{i}.wav", np.random.default_rng(i).standard_normal((3, 8)).astype(np.float32)) for i in range(8)]
    write_snapshot(tmp_path, files, factory)
    for mmap in (False, True):
        reader = SnapshotReader(tmp_path, mmap=mmap)
        assert reader.manifest["faiss"] == factory
        np.testing.assert_allclose(reader.window_vectors(5), files[4].vectors, atol=1e-6)  # query by indexed clip


PATHS = ["a%b/1.wav", "axb/2.wav", "a_c/3.wav", "abc/4.wav", "café/5.wav", "🐕/6.wav", "A%b/7.wav"]


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        (Filters(), PATHS),
        (Filters(path_prefix=""), PATHS),
        (Filters(path_prefix="a%b/"), ["a%b/1.wav"]),  # % and _ are characters, not LIKE wildcards
        (Filters(path_prefix="a_c/"), ["a_c/3.wav"]),
        (Filters(path_prefix="a"), PATHS[:4]),  # case matters: not A%b/
        (Filters(path_prefix="café/"), ["café/5.wav"]),
        (Filters(path_prefix="🐕"), ["🐕/6.wav"]),
        (Filters(path_prefix="abc/4.wav/"), []),
        (Filters(min_duration=5.5), PATHS[2:]),  # durations 1.5, 3.5, 5.5, ...: bounds are inclusive
        (Filters(max_duration=3.5), PATHS[:2]),
        (Filters(path_prefix="a", min_duration=3.5, max_duration=5.5), ["axb/2.wav", "a_c/3.wav"]),
    ],
)
def test_filters_select_files_by_literal_prefix_and_duration(tmp_path: Path, filters: Filters, expected) -> None:
    files = [File(p, unit(*[[1.0, k]] * (k + 1))) for k, p in enumerate(PATHS)]  # file k: k + 1 windows
    write_snapshot(tmp_path, files)
    reader = SnapshotReader(tmp_path)
    assert reader.count(filters) == len(expected)
    rows = reader.windows(list(range(reader.index.ntotal)), filters)
    assert sorted({r.path for r in rows.values()}) == sorted(expected)
    assert len(rows) == sum(PATHS.index(p) + 1 for p in expected)  # every window of each file, no other
    assert filters.active == (expected != PATHS)


def test_a_second_commit_flips_current_and_an_open_reader_keeps_its_snapshot(index: Path) -> None:
    before = SnapshotReader(index)
    after_path = write_snapshot(index, [File("new.wav", unit([0, 0, 0, 0, 1]))])
    assert (index / "CURRENT").read_text() == after_path.name != before.snapshot.name
    after = SnapshotReader(index)
    assert (after.n_files, after.clip(1).path) == (1, "new.wav")
    assert before.n_files == 3 and before.clip(1).path == "dogs/a.wav"  # still its own, complete snapshot
    np.testing.assert_array_equal(before.window_vectors(2), FILES[1].vectors)


def test_a_writer_killed_before_commit_leaves_the_live_snapshot(index: Path) -> None:
    live = (index / "CURRENT").read_text()
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
            import sys, time, numpy as np
            from pathlib import Path
            from audiosearch.indexer.store import SnapshotWriter
            w = SnapshotWriter(Path({str(index)!r}), 8, "Flat")
            w.add_file(1, ("x.wav", 1, 1, "sha", 2.0, 16000, 1), np.zeros(1), np.ones(1))
            w.add_vectors(np.eye(1, 8, dtype="float32"))
            print("written", flush=True)
            time.sleep(60)
        """),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout.readline().strip() == "written"
    child.kill()
    child.wait()
    assert (index / "CURRENT").read_text() == live
    leftover = [p.name for p in (index / "snapshots").iterdir() if p.name != live]
    assert len(leftover) == 1 and leftover[0].startswith(".tmp-")
    assert SnapshotReader(index).n_files == 3
    prune_snapshots(index)  # the next run clears what the crash left
    assert _snapshots(index) == {live}


def test_a_failed_commit_keeps_current_and_abort_removes_the_work(index: Path) -> None:
    live = (index / "CURRENT").read_text()
    writer = SnapshotWriter(index, 8, "Flat")
    writer.add_file(1, ("x.wav", 1, 1, "sha", 4.0, 16000, 1), np.array([0.0, 2.0]), np.array([2.0, 4.0]))
    writer.add_vectors(unit([1]))  # one vector for two windows
    with pytest.raises(IndexBuildError, match="1 vectors for 2 windows"):
        writer.commit({"library": "/x", "model": {"fingerprint": "f"}})
    writer.abort()
    assert (index / "CURRENT").read_text() == live and _snapshots(index) == {live}


def test_prune_keeps_the_live_snapshot_and_the_one_before_it(index: Path) -> None:
    committed = [(index / "CURRENT").read_text()]
    for i in range(4):  # committed within the same second: their ids share a time stamp
        committed.append(write_snapshot(index, [File(f"{i}.wav", unit([1]))]).name)
    prune_snapshots(index)
    assert _snapshots(index) == set(committed[-2:])
    assert SnapshotReader(index).clip(1).path == "3.wav"


def test_prune_never_removes_a_live_snapshot_older_than_the_others(index: Path) -> None:
    first = (index / "CURRENT").read_text()
    for i in range(3):
        write_snapshot(index, [File(f"{i}.wav", unit([1]))])
    (index / "CURRENT").write_text(first)  # rolled back by hand to the first snapshot
    prune_snapshots(index)
    assert first in _snapshots(index) and len(_snapshots(index)) == 2
    assert SnapshotReader(index).n_files == 3


def _break_manifest(snap: Path) -> None:
    (snap / "manifest.json").write_text("{not json")


def _future_format(snap: Path) -> None:
    m = json.loads((snap / "manifest.json").read_text())
    (snap / "manifest.json").write_text(json.dumps({**m, "format": 99}))


def _garbage(name: str):
    return lambda snap: (snap / name).write_bytes(b"\x00garbage" * 100)


def _fewer_vectors(snap: Path) -> None:
    other = write_snapshot(snap.parent.parent.parent / "other", [File("x.wav", unit([1]))])
    (snap / "vectors.faiss").write_bytes((other / "vectors.faiss").read_bytes())


@pytest.mark.parametrize(
    ("damage", "error", "message"),
    [
        (_break_manifest, IndexCorruptError, "unreadable manifest"),
        (_future_format, IndexCorruptError, "index format 99, expected 1"),
        (_garbage("vectors.faiss"), IndexCorruptError, "cannot read FAISS index"),
        (_garbage("meta.sqlite"), IndexCorruptError, "cannot read metadata"),
        (_fewer_vectors, IndexCorruptError, "vector and window counts differ"),
        (lambda snap: (snap / "manifest.json").unlink(), IndexCorruptError, "which is missing or incomplete"),
    ],
)
def test_a_damaged_snapshot_is_a_clear_error(index: Path, damage, error: type, message: str) -> None:
    damage(index / "snapshots" / (index / "CURRENT").read_text())
    with pytest.raises(error) as err:
        SnapshotReader(index)
    assert message in str(err.value) and str(index) in str(err.value)


def test_missing_indexes_are_clear(tmp_path: Path) -> None:
    with pytest.raises(IndexNotFoundError, match="no such index directory"):
        SnapshotReader(tmp_path / "nowhere")
    with pytest.raises(IndexNotFoundError, match=r"no index yet \(run `audiosearch index` first\)"):
        SnapshotReader(tmp_path)
    (tmp_path / "CURRENT").write_text("20240101T000000-abcdef")
    with pytest.raises(IndexCorruptError, match="CURRENT names 20240101T000000-abcdef, which is missing"):
        SnapshotReader(tmp_path)


def test_bad_factories_and_too_few_training_vectors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(IndexBuildError, match="invalid FAISS factory 'IVF,Nonsense'"):
        SnapshotWriter(tmp_path, 8, "IVF,Nonsense")
    writer = SnapshotWriter(tmp_path, 8, "IVF16,Flat")
    with pytest.raises(IndexBuildError, match="needs at least 16 vectors to train, the library gave 3"):
        train_if_needed(writer.index, unit([1], [0, 1], [0, 0, 1]), "IVF16,Flat")
    writer.abort()
    assert not (tmp_path / "CURRENT").exists() and list((tmp_path / "snapshots").iterdir()) == []


def _tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("mmap", [False, True])
def test_a_read_only_snapshot_is_read_without_writing_anything(index: Path, mmap: bool) -> None:
    before = _tree(index)
    paths = [index, *index.rglob("*")]
    for p in paths:
        p.chmod(0o555 if p.is_dir() else 0o444)
    try:
        reader = SnapshotReader(index, mmap=mmap)
        assert reader.count(Filters(path_prefix="dogs/")) == 2
        assert reader.windows([3], Filters())[3].path == "rain/c.wav"
        np.testing.assert_array_equal(reader.window_vectors(3), FILES[2].vectors)
        scores, ids = reader.index.search(FILES[1].vectors, 1)
        assert ids[0, 0] == 2 and scores[0, 0] == pytest.approx(1.0)
        reader.close()
    finally:
        for p in paths:
            p.chmod(0o755 if p.is_dir() else 0o644)
    assert _tree(index) == before  # no journal, no WAL, no rewritten file (root ignores the modes above)


def test_reads_of_more_ids_than_sqlite_takes_in_one_statement(tmp_path: Path) -> None:
    """SQLite caps a statement's parameters at 32766: lists of ids longer than that are read in chunks."""
    ids = {7: ("dog", "bark"), 20_004: ("rain",), 39_999: ()}  # file id -> its words; the ids fall in three chunks
    writer = SnapshotWriter(tmp_path / "idx", 8, "Flat")
    for n, fid in enumerate(ids):
        writer.add_file(fid, (f"f{fid}.wav", 1, 1, f"sha-{fid}", 4.0, 16000, 1), np.array([0.0, 2.0]), [2.0, 4.0])
        writer.add_vectors(unit([1, n], [n, 1]))
    writer.add_words([(fid, FileWords(w, ())) for fid, w in ids.items()], unit([1], [0, 1]))
    writer.commit(manifest())
    reader = SnapshotReader(tmp_path / "idx")
    reader.db.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 32_766)  # stock SQLite's cap; some builds allow more
    asked = list(range(1, 40_001))  # mostly ids no file has
    assert reader.file_ids() == list(ids)
    assert reader.files(asked, Filters()) == {fid: (f"f{fid}.wav", 4.0) for fid in ids}
    assert reader.files(asked, Filters(path_prefix="f2")) == {20_004: ("f20004.wav", 4.0)}
    windows = reader.file_windows(asked)
    assert windows == {fid: [(2 * n, 0.0, 2.0), (2 * n + 1, 2.0, 4.0)] for n, fid in enumerate(ids)}
    assert reader.words.worded(asked) == {7, 20_004}
    terms = ["bark", "rain"]
    assert reader.words.bm25.rank(terms, file_ids=asked) == reader.words.bm25.rank(terms)
    assert list(reader.words.bm25.rank(terms, limit=1, file_ids=asked)) == list(reader.words.bm25.rank(terms, limit=1))
    reader.close()
