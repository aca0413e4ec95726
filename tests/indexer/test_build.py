"""Indexer on real audio with the real lite model, real FAISS and SQLite."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audiosearch.indexer import Filters, IndexBuildError, IndexMismatchError, IndexOptions, Searcher, build_index
from tests.conftest import CLI, REPO, copy_clips

FAST = IndexOptions(workers=0, progress=False)


@pytest.fixture()
def library(shared_data, tmp_path) -> Path:
    lib = tmp_path / "lib"
    copy_clips(shared_data, lib, {"dog_bark": 3, "rooster": 3, "rain": 3})
    return lib


def window_rows(index_dir: Path) -> list[tuple]:
    snap = index_dir / "snapshots" / (index_dir / "CURRENT").read_text().strip()
    with sqlite3.connect(snap / "meta.sqlite") as db:
        return db.execute(
            'SELECT w.id, f.path, w.start, w."end" FROM windows w JOIN files f ON f.id = w.file_id ORDER BY w.id'
        ).fetchall()


def assert_consistent(index_dir: Path) -> Searcher:
    s = Searcher(index_dir)
    rows = window_rows(index_dir)
    assert s.index.ntotal == len(rows)
    assert [r[0] for r in rows] == list(range(len(rows)))  # window id == FAISS position
    assert len({(r[1], r[2]) for r in rows}) == len(rows)  # no duplicate window
    return s


def test_index_and_find_clip_by_example_and_caption(library, tmp_path, lite_model) -> None:
    idx = tmp_path / "idx"
    report = build_index(library, idx, lite_model, FAST)
    assert (report.files, report.windows, report.skipped, report.embedded) == (9, 9, 0, 9)
    s = assert_consistent(idx)
    s.check_model(lite_model.fingerprint)
    assert s.manifest["counts"] == {"files": 9, "windows": 9, "skipped": 0}
    # query by example: a clip's own vector finds that clip first
    clip_id = next(h.file_id for h in s.search(s.window_vectors(1)[:1], k=1)[0].hits)
    assert s.clip(clip_id).path == s.search(s.window_vectors(clip_id)[:1], k=1)[0].hits[0].path
    page = s.search(lite_model.encode_text(["a rooster crowing"]), k=3)[0]
    assert page.total == 9
    assert sum(h.path.startswith("rooster/") for h in page.hits) >= 2, page.hits


def test_results_are_one_per_file_with_offset_and_filters(library, tmp_path, lite_model) -> None:
    idx = tmp_path / "idx"
    build_index(library, idx, lite_model, FAST)
    s = Searcher(idx)
    q = lite_model.encode_text(["rain falling"])
    full = s.search(q, k=9)[0].hits
    assert len({h.file_id for h in full}) == 9
    assert [h.score for h in full] == sorted((h.score for h in full), reverse=True)
    assert s.search(q, k=3, offset=3)[0].hits == full[3:6]
    assert s.search(q, k=5, offset=20)[0].hits == []
    only_dogs = s.search(q, k=9, filters=Filters(path_prefix="dog_bark/"))[0]
    assert only_dogs.total == 3 and all(h.path.startswith("dog_bark/") for h in only_dogs.hits)
    assert s.search(q, k=9, filters=Filters(min_duration=6.0))[0].hits == []


def test_incremental_add_change_delete(library, shared_data, tmp_path, lite_model) -> None:
    idx = tmp_path / "idx"
    build_index(library, idx, lite_model, FAST)
    probe = np.eye(1, lite_model.config.embed_dim, dtype="float32")
    old_ids = {h.path: h.file_id for h in Searcher(idx).search(probe, k=9)[0].hits}
    (library / "rain" / sorted(os.listdir(library / "rain"))[0]).unlink()  # delete
    wave, sr = sf.read(library / "rooster" / sorted(os.listdir(library / "rooster"))[0])
    sf.write(library / "rooster" / sorted(os.listdir(library / "rooster"))[1], wave[: sr * 2], sr)  # change
    copy_clips(shared_data, library, {"helicopter": 1})  # add
    report = build_index(library, idx, lite_model, FAST)
    assert (report.files, report.embedded, report.removed) == (9, 2, 1)
    s = assert_consistent(idx)
    paths = {r[1] for r in window_rows(idx)}
    assert len(paths) == 9 and any(p.startswith("helicopter/") for p in paths)
    kept = {h.path: h.file_id for h in s.search(probe, k=9)[0].hits}
    assert all(kept[p] == old_ids[p] for p in kept if p in old_ids)  # unchanged files keep their ids


@pytest.mark.slow
def test_bad_files_are_skipped_and_reported(library, tmp_path, lite_model) -> None:
    (library / "empty.wav").write_bytes(b"")
    (library / "corrupt.ogg").write_bytes(os.urandom(5000))
    sf.write(library / "zero.wav", np.zeros(0, dtype="float32"), 16000)
    sf.write(library / "nan.wav", np.full(16000, np.nan, dtype="float32"), 16000, subtype="FLOAT")
    noise = np.random.default_rng(0).standard_normal(48000).astype("float32") * 0.1
    sf.write(library / "eight_channels.wav", np.tile(noise[:16000, None], (1, 8)), 16000)
    sf.write(library / "rate_8k.wav", noise[:8000], 8000)
    sf.write(library / "rate_192k.flac", np.resize(noise, 192000 * 2), 192000)
    idx = tmp_path / "idx"
    report = build_index(library, idx, lite_model, FAST)
    assert report.files == 12 and report.skipped == 4  # odd but valid audio is indexed
    logged = [json.loads(line) for line in (idx / "errors.jsonl").read_text().splitlines()]
    reasons = {e["path"]: e["reason"] for e in logged}
    assert "empty" in reasons["empty.wav"] and "no samples" in reasons["zero.wav"]
    assert "decode" in reasons["corrupt.ogg"] and "NaN" in reasons["nan.wav"]
    clips = {c.path: c for c in map(Searcher(idx).clip, range(1, 13))}
    assert clips["eight_channels.wav"].channels == 8 and clips["rate_192k.flac"].sample_rate == 192000
    with pytest.raises(IndexBuildError, match="strict"):
        build_index(library, tmp_path / "idx2", lite_model, IndexOptions(workers=0, progress=False, strict=True))


def test_nothing_indexable_is_an_error_and_keeps_previous_index(library, tmp_path, lite_model) -> None:
    idx = tmp_path / "idx"
    build_index(library, idx, lite_model, FAST)
    before = (idx / "CURRENT").read_text()
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.wav").write_bytes(b"RIFF")
    with pytest.raises(IndexBuildError, match="nothing could be indexed"):
        build_index(bad, idx, lite_model, FAST)
    assert (idx / "CURRENT").read_text() == before
    assert_consistent(idx)


def test_long_file_gives_windows_with_timestamps(shared_data, tmp_path, lite_model) -> None:
    clips = [sf.read(p)[0] for p in sorted((shared_data / "esc10" / "rain").glob("*.ogg"))[:7]]
    lib = tmp_path / "lib"
    lib.mkdir()
    sf.write(lib / "long.flac", np.resize(np.concatenate(clips), 44100 * 35), 44100)  # exactly 35 s
    build_index(lib, tmp_path / "idx", lite_model, FAST)
    rows = window_rows(tmp_path / "idx")
    assert [(r[2], round(r[3], 2)) for r in rows] == [(0, 10), (10, 20), (20, 30), (30, 35)]


def test_model_mismatch_is_refused(library, tmp_path, lite_model) -> None:
    build_index(library, tmp_path / "idx", lite_model, FAST)
    s = Searcher(tmp_path / "idx")
    with pytest.raises(IndexMismatchError, match="built with model"):
        s.check_model("paper-0000")
    with pytest.raises(IndexMismatchError, match="512"):
        s.search(np.zeros((1, 512), dtype="float32"))


@pytest.mark.parametrize("factory", ["HNSW32", "IVF2,Flat"])
def test_other_faiss_types(library, tmp_path, lite_model, factory: str) -> None:
    build_index(library, tmp_path / "idx", lite_model, IndexOptions(workers=0, progress=False, faiss_factory=factory))
    s = assert_consistent(tmp_path / "idx")
    q = s.window_vectors(3)[:1]
    assert s.search(q, k=1)[0].hits[0].file_id == 3
    assert s.manifest["faiss"] == factory


def test_bad_faiss_factory_and_too_few_vectors(library, tmp_path, lite_model) -> None:
    with pytest.raises(IndexBuildError, match="invalid FAISS factory"):
        build_index(library, tmp_path / "a", lite_model, IndexOptions(workers=0, progress=False, faiss_factory="Nope"))
    with pytest.raises(IndexBuildError, match="at least 64"):
        build_index(
            library, tmp_path / "b", lite_model, IndexOptions(workers=0, progress=False, faiss_factory="IVF64,Flat")
        )


@pytest.mark.slow
def test_killed_run_resumes_without_duplicates(shared_data, tmp_path) -> None:
    lib = tmp_path / "lib"
    copy_clips(shared_data, lib, {"dog_bark": 2})
    idx = tmp_path / "idx"
    cmd = [*CLI, "index", str(lib), "--index", str(idx), "--quiet", "--batch-size", "4"]
    subprocess.run(cmd, check=True, cwd=REPO, capture_output=True)
    live = (idx / "CURRENT").read_text()
    # enough files that the kill lands mid-run however fast this machine indexes
    total = 2 + len(copy_clips(shared_data, lib, {"rooster": 40, "rain": 40, "sea_waves": 40}))
    proc = subprocess.Popen(cmd + ["--workers", "1"], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cache = idx / "work" / "cache.sqlite"
    deadline = time.time() + 120
    while time.time() < deadline and _cached(cache) < 6:
        time.sleep(0.2)
    workers = _children(proc.pid)
    proc.kill()
    proc.wait()
    cached = _cached(cache)
    assert 2 <= cached < total, "the kill should land mid-run"
    assert workers, "the run should have had a decode worker"
    while time.time() < deadline and any(Path(f"/proc/{w}").exists() for w in workers):
        time.sleep(0.2)
    assert not [w for w in workers if Path(f"/proc/{w}").exists()], "decode workers outlived their killed parent"
    assert (idx / "CURRENT").read_text() == live  # the served index is untouched
    assert Searcher(idx).index.ntotal == 2
    out = subprocess.run(cmd, check=True, cwd=REPO, capture_output=True, text=True).stdout
    assert f"indexed {total} files" in out
    s = assert_consistent(idx)
    assert s.index.ntotal == total
    assert f"{total - cached} embedded" in out  # only what the killed run had not finished


def _children(pid: int) -> list[int]:
    """Live child processes of pid (Linux /proc; the decode workers of an indexer run)."""
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def _cached(cache: Path) -> int:
    try:
        with sqlite3.connect(f"file:{cache}?mode=ro", uri=True) as db:
            return db.execute("SELECT COUNT(*) FROM files").fetchone()[0]
    except sqlite3.Error:
        return 0


@pytest.fixture()
def tiny_disk(tmp_path):
    """A 4 MB tmpfs: a real full disk, not a mocked writer (needs root, as in CI)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_full_disk_keeps_the_previous_index(library, shared_data, tiny_disk, lite_model) -> None:
    idx = tiny_disk / "idx"
    build_index(library, idx, lite_model, FAST)
    live = (idx / "CURRENT").read_text()
    ballast = tiny_disk / "ballast"
    free = os.statvfs(tiny_disk).f_bavail * os.statvfs(tiny_disk).f_frsize
    ballast.write_bytes(b"\0" * max(0, free - 40_000))  # leave ~40 kB: not enough for a new snapshot
    copy_clips(shared_data, library, {"sea_waves": 8, "chainsaw": 8})
    with pytest.raises(IndexBuildError, match="cannot write the index .*previous index is unchanged"):
        build_index(library, idx, lite_model, FAST)
    assert (idx / "CURRENT").read_text() == live
    assert assert_consistent(idx).index.ntotal == 9
    ballast.unlink()
    report = build_index(library, idx, lite_model, FAST)  # space again: the next run completes
    assert report.files == 25 and assert_consistent(idx).index.ntotal == 25


@pytest.mark.slow
def test_a_killed_decode_worker_fails_clearly_instead_of_hanging(shared_data, tmp_path, lite_model) -> None:
    import signal
    import threading

    lib = tmp_path / "lib"
    copy_clips(shared_data, lib, {"rain": 40, "rooster": 40, "dog_bark": 40, "sea_waves": 40})
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            build_index(lib, tmp_path / "idx", lite_model, IndexOptions(workers=1, progress=False, batch_size=4))
            outcome.append(None)
        except BaseException as err:  # noqa: BLE001 - handed to the test thread
            outcome.append(err)

    t = threading.Thread(target=run)
    t.start()
    deadline = time.time() + 60
    while time.time() < deadline and not (kids := _children(os.getpid())):
        time.sleep(0.1)
    time.sleep(0.5)
    for pid in _children(os.getpid()):
        os.kill(pid, signal.SIGKILL)
    t.join(timeout=120)
    assert not t.is_alive(), "the indexer hung after its worker died"
    assert kids and isinstance(outcome[0], IndexBuildError) and "decode worker died" in str(outcome[0])
    report = build_index(lib, tmp_path / "idx", lite_model, FAST)  # the rerun completes
    assert report.files == 160 and assert_consistent(tmp_path / "idx").index.ntotal == 160
