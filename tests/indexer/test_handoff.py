"""Decoded windows travel from pool workers to the parent as files (audiosearch.indexer.handoff): same vectors as an
in-process build, nothing left behind, stale files of a killed run cleared, and the pipe as fallback."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from audiosearch.indexer import IndexOptions, build_index
from audiosearch.indexer.decode import Decoded, DecodeJob
from audiosearch.indexer.handoff import receive, send
from tests.conftest import copy_clips
from tests.indexer.test_faults import _vectors_by_window


def _decoded(waves: np.ndarray) -> Decoded:
    return Decoded(DecodeJob("a/b.ogg", "/nowhere/a/b.ogg", 1, 0, None), sha1="0" * 40, waves=waves)


def test_pool_build_equals_in_process_build_and_leaves_no_files(shared_data, tmp_path, lite_model) -> None:
    lib = tmp_path / "lib"
    copy_clips(shared_data, lib, {"dog_bark": 3, "rain": 3, "clock_tick": 2})
    stale = tmp_path / "pool" / "work" / "handoff" / "killed-run.f32"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"\0" * 64)  # what a killed run leaves: cleared at the next start
    build_index(lib, tmp_path / "inline", lite_model, IndexOptions(workers=0, progress=False))
    report = build_index(lib, tmp_path / "pool", lite_model, IndexOptions(workers=2, progress=False, batch_size=3))
    assert report.embedded == 8 and not report.errors
    inline, pool = _vectors_by_window(tmp_path / "inline"), _vectors_by_window(tmp_path / "pool")
    assert inline.keys() == pool.keys()
    for key, vector in inline.items():
        np.testing.assert_allclose(pool[key], vector, atol=1e-5, err_msg=str(key))
    assert not (tmp_path / "pool" / "work" / "handoff").exists()


def test_send_and_receive_round_trip_exactly(tmp_path: Path) -> None:
    waves = np.random.default_rng(0).standard_normal((3, 32000)).astype(np.float32)
    sent = send(_decoded(waves.copy()), str(tmp_path))
    assert sent.waves is None and sent.handoff and Path(sent.handoff).parent == tmp_path
    got = receive(sent)
    assert np.array_equal(got.waves, waves) and got.error is None
    assert not list(tmp_path.iterdir())  # read once, then deleted


def test_unwritable_folder_falls_back_to_the_pipe(tmp_path: Path) -> None:
    waves = np.ones((1, 100), dtype=np.float32)
    d = send(_decoded(waves), str(tmp_path / "missing"))
    assert d.handoff is None and d.waves is waves
    assert receive(d).waves is waves


def test_a_vanished_handoff_file_fails_that_file_only(tmp_path: Path) -> None:
    d = send(_decoded(np.ones((2, 50), dtype=np.float32)), str(tmp_path))
    Path(d.handoff).unlink()
    got = receive(d)
    assert got.waves is None and "a/b.ogg" in got.error and "hand-off" in got.error


@pytest.mark.parametrize("rows", [1, 4])
def test_shapes_and_values_survive(tmp_path: Path, rows: int) -> None:
    waves = np.arange(rows * 7, dtype=np.float32).reshape(rows, 7)
    np.testing.assert_array_equal(receive(send(_decoded(waves.copy()), str(tmp_path))).waves, waves)
