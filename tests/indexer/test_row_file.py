"""RowFile reads the rows of the full vectors beside a compressed index exactly as numpy would."""

from __future__ import annotations

import numpy as np
import pytest

from audiosearch.indexer.row_file import RowFile


@pytest.fixture
def matrix(tmp_path):
    rows = np.random.default_rng(3).standard_normal((1000, 384)).astype(np.float32)
    np.save(tmp_path / "v.npy", rows)
    return rows, RowFile(tmp_path / "v.npy")


def test_rows_by_id_slice_and_position_equal_numpys(matrix) -> None:
    rows, f = matrix
    ids = np.array([999, 0, 5, 5, 512])  # any order, repeats
    assert f.shape == (1000, 384) and len(f) == 1000
    np.testing.assert_array_equal(f[ids], rows[ids])
    np.testing.assert_array_equal(f[[7]], rows[[7]])
    np.testing.assert_array_equal(f[np.int64(42)], rows[42])
    np.testing.assert_array_equal(f[250:750], rows[250:750])
    np.testing.assert_array_equal(f[990:2000], rows[990:])  # a slice past the end stops at it, as numpy's
    assert f[np.array([], np.int64)].shape == (0, 384)


def test_out_of_range_ids_are_refused(matrix) -> None:
    _, f = matrix
    with pytest.raises(IndexError):
        f[np.array([3, 1000])]
    with pytest.raises(IndexError):
        f[np.array([-1])]
    with pytest.raises(IndexError):
        f[::2]


def test_the_snapshot_writers_own_header_reads_back(tmp_path) -> None:
    """vectors.npy is written by SnapshotWriter with a header reserved before the count is known."""
    from audiosearch.indexer.store import SnapshotReader, SnapshotWriter

    vecs = np.random.default_rng(4).standard_normal((300, 32)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    writer = SnapshotWriter(tmp_path / "idx", 32, "IVF4,PQ16x4fsr")
    writer.index.train(vecs)
    one = (np.zeros(1), np.ones(1))
    writer.add_files([(i + 1, (f"{i}.wav", 1, 0, "0" * 40, 1.0, 16000, 1), *one) for i in range(300)])
    writer.add_vectors(vecs)
    model = {"name": "t", "fingerprint": "f", "dim": 32, "sample_rate": 16000}
    writer.commit({"library": str(tmp_path), "model": model, "counts": {"files": 300, "windows": 300}})
    reader = SnapshotReader(tmp_path / "idx")
    assert isinstance(reader.vectors, RowFile)
    np.testing.assert_array_equal(reader.vectors_of(np.array([299, 0, 17])), vecs[[299, 0, 17]])
    reader.close()
