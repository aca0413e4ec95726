"""`index --ray` on a real local Ray (2 CPUs), real audio, the real lite model and real FAISS, against the
single-process indexer: same vectors, same index bytes, same search results; resumable per shard."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from audiosearch.app.cli import main
from audiosearch.indexer import IndexOptions, Searcher, build_index
from tests.conftest import CLI, REPO, copy_clips

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'audiosearch[ray]')")

from audiosearch.indexer.distributed import RayOptions, build_index_ray, embed_shards  # noqa: E402 - needs ray

pytestmark = pytest.mark.slow  # minutes in all: make test-all and CI run it

FAST = IndexOptions(workers=0, progress=False)
CLASSES = ["dog_bark", "rooster", "rain", "helicopter", "chainsaw", "sea_waves", "clock_tick", "baby_cry"]
QUERIES = ["a dog barking", "a rooster crowing", "rain falling", "a helicopter flying", "waves on a beach"]


@pytest.fixture(scope="module")
def library(shared_data, tmp_path_factory) -> Path:
    lib = tmp_path_factory.mktemp("ray") / "lib"
    copy_clips(shared_data, lib, dict.fromkeys(CLASSES, 3))  # 24 real clips
    return lib


@pytest.fixture(scope="module")
def local_index(library, lite_model, tmp_path_factory) -> Path:
    idx = tmp_path_factory.mktemp("local") / "idx"
    build_index(library, idx, lite_model, FAST)
    return idx


def snapshot(index_dir: Path) -> Path:
    return index_dir / "snapshots" / (index_dir / "CURRENT").read_text().strip()


def rows(index_dir: Path) -> list[tuple]:
    with sqlite3.connect(snapshot(index_dir) / "meta.sqlite") as db:
        files = db.execute("SELECT id, path, size, sha1, duration, sample_rate, channels FROM files ORDER BY id")
        windows = db.execute('SELECT id, file_id, start, "end" FROM windows ORDER BY id')
        return files.fetchall() + windows.fetchall()


def all_vectors(s: Searcher) -> np.ndarray:
    return np.stack([s.index.reconstruct(i) for i in range(s.index.ntotal)])


def results(s: Searcher, model, k: int = 5) -> list[list[tuple[str, float]]]:
    pages = s.search(model.encode_text(QUERIES), k=k)
    return [[(h.path, h.score) for h in p.hits] for p in pages]


def assert_same_index(a: Path, b: Path, model) -> None:
    assert rows(a) == rows(b)  # same files, ids, windows and timestamps
    sa, sb = Searcher(a), Searcher(b)
    np.testing.assert_allclose(all_vectors(sa), all_vectors(sb), atol=1e-5)
    ra, rb = results(sa, model), results(sb, model)
    assert [[p for p, _ in q] for q in ra] == [[p for p, _ in q] for q in rb]
    np.testing.assert_allclose([[s for _, s in q] for q in ra], [[s for _, s in q] for q in rb], atol=1e-5)


def test_ray_index_matches_the_local_indexer(local_ray, library, local_index, lite_model, tmp_path) -> None:
    idx = tmp_path / "idx"
    result = build_index_ray(library, idx, lite_model, FAST, RayOptions(shard_files=4))
    assert result.shards > 1 and result.reused == 0 and result.files_embedded == 24
    assert (result.index.files, result.index.windows, result.index.embedded) == (24, 24, 24)
    assert_same_index(local_index, idx, lite_model)
    manifests = [json.loads((snapshot(i) / "manifest.json").read_text()) for i in (local_index, idx)]
    for key in ("format", "faiss", "model", "counts", "window_seconds", "hop_seconds", "library"):
        assert manifests[0][key] == manifests[1][key], key
    assert not list((idx / "work" / "shards").glob("*.npz"))  # all imported; the cache holds them now
    again = build_index_ray(library, idx, lite_model, FAST, RayOptions(shard_files=4))
    assert (again.shards, again.files_embedded, again.index.embedded, again.index.files) == (0, 0, 0, 24)


def test_crashed_task_is_retried_and_rerun_skips_finished_shards(
    local_ray, library, local_index, lite_model, tmp_path
) -> None:
    idx = tmp_path / "idx"
    # A worker process killed from outside while it runs a shard (as the OOM killer would); Ray runs that
    # shard again on a new worker.
    result: list = []
    run = threading.Thread(
        target=lambda: result.append(embed_shards(library, idx, lite_model, FAST, RayOptions(shard_files=4)))
    )
    run.start()
    killed = _kill_a_shard_worker(deadline=time.time() + 120)
    run.join(timeout=300)
    stats = result[0]
    assert killed and stats.embedded == 24 and stats.shards > 1
    shards = sorted((idx / "work" / "shards").glob("*.npz"))
    assert len(shards) == stats.shards
    # A run that died before writing a snapshot: the cache is gone, one shard never finished.
    for p in (idx / "work").glob("cache.sqlite*"):
        p.unlink()
    lost = shards[0]
    with np.load(lost) as z:
        lost_files = len(json.loads(str(z["meta"]))["files"])
    lost.unlink()
    result = build_index_ray(library, idx, lite_model, FAST, RayOptions(shard_files=4))
    assert (result.shards, result.reused) == (stats.shards, stats.shards - 1)
    assert result.files_embedded == lost_files  # only the lost shard was embedded again
    assert_same_index(local_index, idx, lite_model)


def _kill_a_shard_worker(deadline: float) -> int | None:
    """SIGKILL the first Ray worker process found running a shard task (its title is ray::_embed_shard)."""
    while time.time() < deadline:
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                if cmdline.read_bytes().startswith(b"ray::_embed_shard"):
                    pid = int(cmdline.parent.name)
                    os.kill(pid, signal.SIGKILL)
                    return pid
            except (OSError, ValueError):
                continue
        time.sleep(0.05)
    return None


def test_ivf_pq_from_ray_matches_local_and_loads_memory_mapped(local_ray, library, lite_model, tmp_path) -> None:
    # PQ codebooks are k-means on a sample: a 1e-7 difference in one input vector can move a centroid. The
    # float differences come from batch composition and torch's thread count, so here both paths embed one
    # window per forward on one thread (as Ray workers do) and must then agree bit for bit.
    opts = IndexOptions(workers=0, progress=False, window_s=1.0, hop_s=0.25, faiss_factory="IVF4,PQ16", batch_size=1)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        build_index(library, tmp_path / "local", lite_model, opts)
    finally:
        torch.set_num_threads(threads)
    result = build_index_ray(library, tmp_path / "ray", lite_model, opts, RayOptions(shard_files=6))
    assert result.index.windows >= 256  # enough to train the PQ codebooks, from one sample for all shards
    assert_same_index(tmp_path / "local", tmp_path / "ray", lite_model)
    local_faiss = (snapshot(tmp_path / "local") / "vectors.faiss").read_bytes()
    assert (snapshot(tmp_path / "ray") / "vectors.faiss").read_bytes() == local_faiss  # same codebooks and codes
    in_ram, mapped = Searcher(tmp_path / "ray", mmap=False), Searcher(tmp_path / "ray", mmap=True)
    faiss_file = str(snapshot(tmp_path / "ray") / "vectors.faiss")
    assert faiss_file in Path("/proc/self/maps").read_text()  # the codes are read from the file, not copied
    assert results(mapped, lite_model) == results(in_ram, lite_model)
    np.testing.assert_array_equal(mapped.window_vectors(3), in_ram.window_vectors(3))


def test_mmap_setting_reaches_the_searcher(local_index, monkeypatch, lite_model) -> None:
    from audiosearch.app.search_service import SearchService
    from audiosearch.app.settings import Settings

    assert Settings().mmap is False and Searcher(local_index).mmap is False  # opt-in
    monkeypatch.setenv("AUDIOSEARCH_MMAP", "true")
    settings = Settings(index_dir=local_index)
    service = SearchService(lite_model, settings.index_dir, mmap=settings.mmap)
    assert settings.mmap is True and service.searcher.mmap is True
    service.reload()
    assert service.searcher.mmap is True  # a hot swap keeps the setting


def test_cli_index_on_ray(local_ray, library, local_index, lite_model, tmp_path, capsys) -> None:
    idx = tmp_path / "idx"
    assert main(["index", str(library), "--index", str(idx), "--ray", "--workers", "0", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "indexed 24 files" in out and "24 files embedded on the cluster" in out, out
    assert_same_index(local_index, idx, lite_model)


@pytest.mark.parametrize(
    ("address", "reason"),
    [("127.0.0.1:1", "cannot reach a Ray cluster there"), ("nonsense", "expected HOST:PORT")],
)
def test_cli_bad_ray_address_is_one_line(library, tmp_path, address: str, reason: str) -> None:
    proc = subprocess.run(
        [*CLI, "index", str(library), "--index", str(tmp_path / "i"), "--ray", address],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr  # no traceback
    assert lines[0].startswith(f"audiosearch: error: --ray {address}: {reason}"), lines
    assert not (tmp_path / "i").exists()


def test_service_and_plain_cli_never_import_ray() -> None:
    modules = (
        "audiosearch.app.main, audiosearch.app.cli, audiosearch.indexer.build, audiosearch.indexer.search.searcher"
    )
    code = f"import sys, {modules}; assert 'ray' not in sys.modules, 'ray'"
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=120)


def test_long_files_stream_on_ray_as_they_do_locally(local_ray, shared_data, lite_model, tmp_path) -> None:
    from tests.indexer.test_long_files import real_recording

    lib = tmp_path / "lib"
    copy_clips(shared_data, lib, {"dog_bark": 2})
    real_recording(shared_data, 95.0, 22050, lib / "long.wav")
    bad = real_recording(shared_data, 60.0, 16000, lib / "long_nan.wav", subtype="FLOAT")
    wave, sr = sf.read(bad, dtype="float32")
    wave[45 * sr] = np.nan
    sf.write(bad, wave, sr, subtype="FLOAT")
    opts = IndexOptions(workers=0, progress=False, stream_over_s=30)  # both long files take the block path
    local = build_index(lib, tmp_path / "local", lite_model, opts)
    result = build_index_ray(lib, tmp_path / "ray", lite_model, opts, RayOptions(shard_files=2))
    assert local.windows == result.index.windows == 2 + 10
    assert [e["path"] for e in result.index.errors] == ["long_nan.wav"] == [e["path"] for e in local.errors]
    assert_same_index(tmp_path / "local", tmp_path / "ray", lite_model)


def test_the_snapshot_phase_reuses_the_shards_content_hashes(local_ray, shared_data, lite_model, tmp_path) -> None:
    """After the Ray phase the driver does not read every file again to hash it: a file whose bytes change
    while size and mtime stay (as the local indexer also trusts) keeps the hash the shard computed."""
    lib, idx = tmp_path / "lib", tmp_path / "idx"
    clips = copy_clips(shared_data, lib, {"rain": 2, "rooster": 2})
    opts = IndexOptions(workers=0, progress=False)
    stats = embed_shards(lib, idx, lite_model, opts, RayOptions(shard_files=2))
    assert stats.embedded == 4 and set(stats.hashes) == {c.relative_to(lib).as_posix() for c in clips}
    st = clips[0].stat()
    data = bytearray(clips[0].read_bytes())
    data[-1] ^= 0xFF
    clips[0].write_bytes(bytes(data))
    os.utime(clips[0], ns=(st.st_atime_ns, st.st_mtime_ns))
    shutil.copytree(idx, tmp_path / "same_cache")  # the shards' cache, for a run without the hashes
    report = build_index(lib, idx, lite_model, replace(opts, known_hashes=stats.hashes))
    assert report.embedded == 0 and report.files == 4  # nothing hashed anew, so nothing looked changed
    rehashed = build_index(lib, tmp_path / "same_cache", lite_model, opts)
    assert rehashed.embedded == 1  # without them every file is read again, and the edited one is new
