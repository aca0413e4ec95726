"""The embedding cache (indexer/cache.py): values round trip, a file is all or nothing (even when the writer is
killed), entries are per model fingerprint and window settings, and pruning drops only what is stale."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from audiosearch.indexer.cache import EmbeddingCache
from tests.conftest import REPO


def _vectors(n: int, seed: int, dim: int = 8) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


@pytest.fixture()
def cache(tmp_path: Path):
    c = EmbeddingCache(tmp_path / "work" / "cache.sqlite", "model-aaaa", 10.0, 5.0)
    yield c
    c.close()


def test_put_then_get_gives_back_the_same_values(cache: EmbeddingCache) -> None:
    vecs = _vectors(3, 0)
    cache.put("sha-a", 12.5, 44100, 2, np.array([0.0, 5.0, 10.0]), np.array([10.0, 12.5, 12.5]), vecs.astype("float64"))
    got = cache.get("sha-a")
    assert (got.duration, got.sample_rate, got.channels) == (12.5, 44100, 2)
    assert got.starts.tolist() == [0.0, 5.0, 10.0] and got.ends.tolist() == [10.0, 12.5, 12.5]
    assert got.vectors.dtype == np.float32
    np.testing.assert_array_equal(got.vectors, vecs)
    assert cache.done_hashes() == {"sha-a"}


def test_a_second_put_replaces_every_window(cache: EmbeddingCache) -> None:
    cache.put("sha-a", 30.0, 16000, 1, [0.0, 10.0, 20.0], [10.0, 20.0, 30.0], _vectors(3, 0))
    cache.put("sha-a", 9.0, 16000, 1, [0.0], [9.0], _vectors(1, 1))
    got = cache.get("sha-a")
    assert got.duration == 9.0 and got.ends.tolist() == [9.0]
    np.testing.assert_array_equal(got.vectors, _vectors(1, 1))


def test_a_put_that_fails_part_way_leaves_the_earlier_entry_whole(cache: EmbeddingCache) -> None:
    cache.put("sha-a", 20.0, 16000, 1, [0.0, 10.0], [10.0, 20.0], _vectors(2, 0))
    with pytest.raises(IndexError):  # three windows, two vectors: fails after its old windows were deleted
        cache.put("sha-a", 30.0, 16000, 1, [0.0, 10.0, 20.0], [10.0, 20.0, 30.0], _vectors(2, 5))
    with pytest.raises(ValueError):
        cache.put("sha-b", 30.0, 16000, 1, [0.0, 10.0, 20.0], [10.0], _vectors(3, 6))
    got = cache.get("sha-a")
    assert got.duration == 20.0 and got.starts.tolist() == [0.0, 10.0]
    np.testing.assert_array_equal(got.vectors, _vectors(2, 0))
    assert cache.done_hashes() == {"sha-a"}


def test_a_writer_killed_mid_run_leaves_only_whole_files(tmp_path: Path) -> None:
    """The indexer commits each file as its batch finishes; kill it and every cached file is complete."""
    path = tmp_path / "cache.sqlite"
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
                import numpy as np
                from pathlib import Path
                from audiosearch.indexer.cache import EmbeddingCache
                cache = EmbeddingCache(Path({str(path)!r}), "model-aaaa", 10.0, 10.0)
                i = 0
                while True:
                    n = 200 + i % 7
                    starts = np.arange(n) * 10.0
                    cache.put(f"f{{i:06d}}", 10.0 * n, 16000, 1, starts, starts + 10, np.full((n, 64), i, "float32"))
                    i += 1
                    if i == 10:
                        print("running", flush=True)
            """),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout.readline().strip() == "running"
    time.sleep(0.3)
    child.kill()
    child.wait()
    cache = EmbeddingCache(path, "model-aaaa", 10.0, 10.0)
    done = sorted(cache.done_hashes())
    assert len(done) >= 10 and done == [f"f{i:06d}" for i in range(len(done))]  # in order, none half there
    for h in done:
        i, got = int(h[1:]), cache.get(h)
        assert len(got.vectors) == len(got.starts) == 200 + i % 7 and (got.vectors == i).all()
    cache.close()


def test_entries_belong_to_one_model_and_window_setting(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    a = EmbeddingCache(path, "model-aaaa", 10.0, 5.0)
    for sha in ["x", "y"]:
        a.put(sha, 10.0, 16000, 1, [0.0], [10.0], _vectors(1, 0))
    other_model = EmbeddingCache(path, "model-bbbb", 10.0, 5.0)
    other_model.put("z", 10.0, 16000, 1, [0.0], [10.0], _vectors(1, 2))
    assert other_model.done_hashes() == {"z"}
    assert EmbeddingCache(path, "model-aaaa", 10.0, 10.0).done_hashes() == set()  # another hop
    assert EmbeddingCache(path, "model-aaaa", 2.0, 5.0).done_hashes() == set()  # another window
    assert EmbeddingCache(path, "model-aaaa", 10, 5).done_hashes() == {"x", "y"}  # 10 and 10.0 are one setting
    np.testing.assert_array_equal(other_model.get("z").vectors, _vectors(1, 2))
    np.testing.assert_array_equal(a.get("x").vectors, _vectors(1, 0))


def test_prune_drops_unused_entries_of_its_own_setting_only(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    a = EmbeddingCache(path, "model-aaaa", 10.0, 10.0)
    b = EmbeddingCache(path, "model-bbbb", 10.0, 10.0)
    for sha in ["p", "q", "r"]:
        a.put(sha, 10.0, 16000, 1, [0.0], [10.0], _vectors(1, ord(sha)))
        b.put(sha, 10.0, 16000, 1, [0.0], [10.0], _vectors(1, ord(sha)))
    assert a.prune(["q", "not-cached"]) == 2
    assert a.done_hashes() == {"q"} and b.done_hashes() == {"p", "q", "r"}
    np.testing.assert_array_equal(a.get("q").vectors, _vectors(1, ord("q")))
    assert a.prune(["q"]) == 0
    a.put("p", 10.0, 16000, 1, [0.0], [10.0], _vectors(1, 9))  # a pruned hash can come back
    np.testing.assert_array_equal(a.get("p").vectors, _vectors(1, 9))


def test_a_cache_made_with_the_old_used_column_still_reads_and_writes(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    with sqlite3.connect(path) as db:  # the files table as caches made before were created
        db.execute(
            "CREATE TABLE files (key TEXT PRIMARY KEY, duration REAL NOT NULL, sample_rate INTEGER NOT NULL, "
            "channels INTEGER NOT NULL, n_windows INTEGER NOT NULL, used INTEGER NOT NULL DEFAULT 0)"
        )
    db.close()
    cache = EmbeddingCache(path, "model-aaaa", 10.0, 5.0)
    vecs = _vectors(2, 3)
    cache.put("sha-old", 7.5, 16000, 1, np.array([0.0, 5.0]), np.array([7.5, 7.5]), vecs)
    np.testing.assert_array_equal(cache.get("sha-old").vectors, vecs)
    assert cache.done_hashes() == {"sha-old"}
    cache.close()
