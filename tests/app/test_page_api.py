"""What the search page draws, through the real API: waveform peaks, per-window scores and relevance."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf

from audiosearch.app.main import create_app
from audiosearch.app.settings import Settings
from audiosearch.indexer import IndexOptions, build_index
from audiosearch.indexer.peaks import PEAK_BINS
from audiosearch.indexer.search.fusion import MAX_HIT_WINDOWS
from audiosearch.indexer.snapshots import current_snapshot
from tests.app.live import live_server
from tests.conftest import copy_clips


def long_file(shared_data: Path, dest: Path) -> float:
    """20 s of rain, a dog bark (5 s), 15 s of rain: the bark sits in the middle. Returns its start."""
    rain, rate = sf.read(sorted((shared_data / "esc10" / "rain").glob("*.ogg"))[-1], dtype="float32")
    bark, rate2 = sf.read(sorted((shared_data / "esc10" / "dog_bark").glob("*.ogg"))[-1], dtype="float32")
    assert rate == rate2
    quiet = np.tile(rain * 0.2, 4)
    mix = np.concatenate([quiet[: 20 * rate], bark, quiet[: 15 * rate]])
    dest.parent.mkdir(parents=True, exist_ok=True)
    sf.write(dest, mix, rate)
    return 20.0


@pytest.fixture(scope="module")
def built(shared_data, tmp_path_factory, lite_model) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("page")
    lib = root / "lib"
    copy_clips(shared_data, lib, {"dog_bark": 2, "rooster": 2, "rain": 2})
    long_file(shared_data, lib / "long" / "street.wav")
    build_index(lib, root / "idx", lite_model, IndexOptions(workers=0, progress=False, window_s=10.0, hop_s=2.5))
    return lib, root / "idx"


@pytest.fixture(scope="module")
def client(built, lite_model):
    app = create_app(Settings(index_dir=built[1]), model=lite_model)
    with live_server(app) as url, httpx.Client(base_url=url, timeout=30) as c:
        yield c


@pytest.mark.parametrize("mode", ["hybrid", "audio", "text"])
def test_hits_carry_relevance_and_window_scores(client, mode) -> None:
    body = client.get("/search", params={"q": "a dog barking", "k": 7, "mode": mode}).json()
    hits = body["results"]
    assert hits
    scores, rel = [h["score"] for h in hits], [h["relevance"] for h in hits]
    assert all(0.0 <= r <= 1.0 for r in rel)
    assert rel == sorted(rel, reverse=True) and scores == sorted(scores, reverse=True)
    for h in hits:
        wins = h["windows"]
        assert 1 <= len(wins) <= MAX_HIT_WINDOWS
        assert [w["start"] for w in wins] == sorted(w["start"] for w in wins)
        assert all(0 <= w["start"] < w["end"] <= h["duration"] + 1e-6 for w in wins)
        best = max(wins, key=lambda w: w["score"])
        assert best["score"] == h["evidence"]["audio"]  # the best window is the hit's audio evidence
        assert best["start"] <= h["start"] and h["end"] <= best["end"]
    if mode != "text":  # the calibrated threshold: 0.5 relevance
        threshold = body["min_score"]
        assert all((r >= 0.5) == (s >= threshold) for r, s in zip(rel, scores, strict=True))


def test_long_file_matches_in_the_middle(client) -> None:
    hits = client.get("/search", params={"q": "a dog barking", "k": 10, "mode": "audio"}).json()["results"]
    (hit,) = [h for h in hits if h["path"] == "long/street.wav"]
    assert hit["duration"] == pytest.approx(40.0, abs=0.1)
    assert len(hit["windows"]) > 5  # 10 s windows every 2.5 s
    assert 10.0 <= hit["start"] <= 22.5  # a window that holds the bark, not the rain before or after it
    first, last = hit["windows"][0], hit["windows"][-1]
    assert max(first["score"], last["score"]) < hit["evidence"]["audio"] if hit["evidence"] else True


def test_peaks_from_the_index(client) -> None:
    hits = client.get("/search", params={"q": "rain", "k": 10}).json()["results"]
    for h in hits:
        r = client.get(f"/clips/{h['id']}/peaks")
        assert r.status_code == 200 and r.headers["etag"]
        p = r.json()
        assert p["source"] == "index" and p["id"] == h["id"] and p["duration"] == h["duration"]
        assert len(p["peaks"]) == PEAK_BINS and all(0.0 <= v <= 1.0 for v in p["peaks"])
        assert max(p["peaks"]) > 0.01  # real audio, not silence
    (long,) = [h for h in hits if h["path"] == "long/street.wav"]
    peaks = np.array(client.get(f"/clips/{long['id']}/peaks").json()["peaks"])
    # the bark (20-25 s of 40 s) is louder than the rain at a fifth of its level around it
    assert peaks[200:250].max() > 2 * peaks[:150].max()


def test_peaks_bad_ids(client) -> None:
    for bad, code in (("0", 422), ("abc", 422), ("999999", 404)):
        r = client.get(f"/clips/{bad}/peaks")
        assert r.status_code == code and isinstance(r.json()["detail"], (str, list))


def test_index_without_peaks_computes_them_from_the_file(built, tmp_path, lite_model) -> None:
    """A snapshot written before peaks existed: the service reads them from the file once, close to what the
    indexer stores (that one is taken from the audio at the model's rate)."""
    lib, idx = built
    old = tmp_path / "idx"
    shutil.copytree(idx, old)
    snap = current_snapshot(old)
    with sqlite3.connect(snap / "meta.sqlite") as db:
        stored = dict(db.execute("SELECT file_id, data FROM peaks").fetchall())
        db.execute("DROP TABLE peaks")
    with live_server(create_app(Settings(index_dir=old), model=lite_model)) as url, httpx.Client(base_url=url) as c:
        for fid, blob in stored.items():
            p = c.get(f"/clips/{fid}/peaks").json()
            assert p["source"] == "file" and len(p["peaks"]) == PEAK_BINS
            got, indexed = np.array(p["peaks"]), np.frombuffer(blob, "<f2").astype(float)
            assert np.corrcoef(got, indexed)[0, 1] > 0.9 and np.abs(got - indexed).max() < 0.25, (fid, got, indexed)
            assert c.get(f"/clips/{fid}/peaks").json() == p  # kept


def test_rebuild_keeps_the_peaks_of_unchanged_files(built, tmp_path, shared_data, lite_model) -> None:
    lib, idx = built
    lib2, idx2 = tmp_path / "lib", tmp_path / "idx"
    shutil.copytree(lib, lib2)
    shutil.copytree(idx, idx2)
    with sqlite3.connect(current_snapshot(idx2) / "meta.sqlite") as db:
        before = dict(db.execute("SELECT f.path, p.data FROM peaks p JOIN files f ON f.id = p.file_id").fetchall())
    copy_clips(shared_data, lib2, {"helicopter": 1})
    opts = IndexOptions(workers=0, progress=False, window_s=10.0, hop_s=2.5)
    build_index(lib2, idx2, lite_model, opts)
    with sqlite3.connect(current_snapshot(idx2) / "meta.sqlite") as db:
        after = dict(db.execute("SELECT f.path, p.data FROM peaks p JOIN files f ON f.id = p.file_id").fetchall())
    assert len(before) == 7 and len(after) == 8
    assert {k: after[k] for k in before} == before
