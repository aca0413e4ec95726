"""Fault matrix for the indexer: every kind of bad file in one library, and kills at random points."""

from __future__ import annotations

import logging
import os
import random
import sqlite3
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audiosearch.indexer import IndexOptions, Searcher, build_index
from tests.conftest import CLI, REPO, copy_clips
from tests.indexer.test_build import assert_consistent, window_rows
from tests.indexer.test_long_files import real_recording

INDEXED = "indexed"
# Every bad input the issue names (except multi-hour files: test_long_files.py), each with its outcome.
MATRIX: dict[str, str] = {
    "empty.wav": "empty file",
    "header_only.wav": "no samples",
    "random_bytes.ogg": "cannot decode",
    "text_named.mp3": "not a recognised audio format",
    "zero_samples.wav": "no samples",
    "one_sample_44k.wav": "too short",
    "nan.wav": "NaN or infinite",
    "inf.wav": "NaN or infinite",
    "broken_link.ogg": "broken symlink",
    "outside_link.ogg": "outside the library",
    "truncated.ogg": INDEXED,  # what decodes of a cut-off file is indexed, with its real duration
    "truncated.wav": INDEXED,
    "one_sample_16k.wav": INDEXED,
    "eight_channels.wav": INDEXED,
    "rate_8k.wav": INDEXED,
    "rate_192k.flac": INDEXED,
}


def bad_library(shared: Path, root: Path) -> Path:
    lib = root / "lib"
    good = copy_clips(shared, lib, {"dog_bark": 2, "rooster": 2})
    raw = good[0].read_bytes()
    wave, sr = sf.read(good[0], dtype="float32")
    sf.write(root / "full.wav", wave, sr)
    wav = (root / "full.wav").read_bytes()
    noise = np.random.default_rng(0).standard_normal(32000).astype("float32") * 0.1
    (lib / "empty.wav").write_bytes(b"")
    (lib / "header_only.wav").write_bytes(wav[:44])
    (lib / "random_bytes.ogg").write_bytes(np.random.default_rng(1).bytes(5000))
    (lib / "text_named.mp3").write_text("not audio at all\n" * 50)
    sf.write(lib / "zero_samples.wav", np.zeros(0, "float32"), 16000)
    sf.write(lib / "one_sample_44k.wav", np.full(1, 0.5, "float32"), 44100)
    sf.write(lib / "nan.wav", np.full(16000, np.nan, "float32"), 16000, subtype="FLOAT")
    sf.write(lib / "inf.wav", np.full(16000, np.inf, "float32"), 16000, subtype="FLOAT")
    (lib / "broken_link.ogg").symlink_to(root / "gone.ogg")
    (lib / "outside_link.ogg").symlink_to(good[0].rename(root / "outside.ogg"))
    (lib / "truncated.ogg").write_bytes(raw[: len(raw) // 2])
    (lib / "truncated.wav").write_bytes(wav[: len(wav) // 3])
    sf.write(lib / "one_sample_16k.wav", np.full(1, 0.5, "float32"), 16000)
    sf.write(lib / "eight_channels.wav", np.tile(noise[:16000, None], (1, 8)), 16000)
    sf.write(lib / "rate_8k.wav", noise[:8000], 8000)
    sf.write(lib / "rate_192k.flac", np.resize(noise, 192000), 192000)
    (lib / "folder.wav").mkdir()  # a directory with an audio name is not a file: not even reported
    return lib


@pytest.mark.slow
def test_every_bad_file_is_skipped_with_its_reason_and_the_rest_is_indexed(shared_data, tmp_path, lite_model):
    lib = bad_library(shared_data, tmp_path)
    report = build_index(lib, tmp_path / "idx", lite_model, IndexOptions(workers=1, progress=False))
    reasons = {e["path"]: e["reason"] for e in report.errors}
    for name, outcome in MATRIX.items():
        if outcome == INDEXED:
            assert name not in reasons, reasons.get(name)
        else:
            assert outcome in reasons.get(name, ""), (name, reasons.get(name))
    assert set(reasons) <= set(MATRIX)
    s = assert_consistent(tmp_path / "idx")
    paths = {c.path: c for c in map(s.clip, range(1, report.files + 1))}
    assert len(paths) == report.files == 3 + sum(v == INDEXED for v in MATRIX.values())
    assert 0 < paths["truncated.wav"].duration < 5 * 0.4 and paths["eight_channels.wav"].channels == 8
    # nothing else is affected: the good clips are found by their captions
    hits = s.search(lite_model.encode_text(["a rooster crowing"]), k=2)[0].hits
    assert any(h.path.startswith("rooster/") for h in hits), hits


@pytest.mark.skipif(os.geteuid() == 0, reason="running as root: permissions cannot make a file unreadable")
def test_an_unreadable_file_is_skipped(shared_data, tmp_path, lite_model) -> None:
    lib = tmp_path / "lib"
    clips = copy_clips(shared_data, lib, {"rain": 2})
    clips[0].chmod(0)
    report = build_index(lib, tmp_path / "idx", lite_model, IndexOptions(workers=0, progress=False))
    assert report.files == 1 and report.errors[0]["reason"] == "permission denied"


def _cache_is_whole(cache: Path) -> bool:
    """Every cached file has all its windows: a kill never leaves half a file behind."""
    if not cache.exists():
        return True
    with sqlite3.connect(f"file:{cache}?mode=ro", uri=True) as db:
        bad = db.execute(
            "SELECT COUNT(*) FROM files f WHERE n_windows != (SELECT COUNT(*) FROM windows w WHERE w.key = f.key)"
        ).fetchone()[0]
    return bad == 0


def _vectors_by_window(index_dir: Path) -> dict[tuple[str, float], np.ndarray]:
    s = Searcher(index_dir)
    return {(path, round(start, 3)): s.index.reconstruct(wid) for wid, path, start, _ in window_rows(index_dir)}


@pytest.mark.slow
def test_kills_at_random_points_over_repeated_runs(shared_data, tmp_path, lite_model) -> None:
    seed = int(os.environ.get("AUDIOSEARCH_KILL_SEED", time.time_ns() % 10**6))
    rng = random.Random(seed)
    lib, idx = tmp_path / "lib", tmp_path / "idx"
    cmd = [*CLI, "index", str(lib), "--index", str(idx), "--quiet", "--batch-size", "4"]
    copy_clips(shared_data, lib, {"dog_bark": 2})
    subprocess.run(cmd, check=True, cwd=REPO, capture_output=True)
    real_recording(shared_data, 12 * 60, 8000, lib / "long" / "twelve_minutes.wav")  # streamed in blocks
    kills = []
    for label in ("rooster", "rain", "sea_waves", "baby_cry", "helicopter"):
        copy_clips(shared_data, lib, {label: 6})  # new work for every run, so each kill lands somewhere
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        delay = rng.uniform(0.5, 9.0)
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        kills.append((round(delay, 2), proc.returncode))
        where = f"seed {seed}, kills (delay s, exit code) {kills}"
        s = assert_consistent(idx)  # the served index is whole after every kill
        assert s.index.ntotal in {2} | {len(window_rows(idx))}, where
        assert _cache_is_whole(idx / "work" / "cache.sqlite"), where
    logging.getLogger(__name__).warning(where)  # shown on failure: which kill points this run tried
    subprocess.run(cmd, check=True, cwd=REPO, capture_output=True)
    assert_consistent(idx)
    build_index(lib, tmp_path / "reference", lite_model, IndexOptions(workers=0, progress=False))
    got, want = _vectors_by_window(idx), _vectors_by_window(tmp_path / "reference")
    assert got.keys() == want.keys(), f"lost or duplicate windows; seed {seed}, kills {kills}"
    worst = max(float(np.abs(got[k] - want[k]).max()) for k in want)
    assert worst < 1e-4, f"vectors differ by {worst}; seed {seed}, kills {kills}"
