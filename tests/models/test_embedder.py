"""The one embedding pipeline (models/embedder.py), on the baseline model: order, values, full batches, items
split across batches or fed as many chunks, pass-through items, an item failing part-way, overlap."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audiosearch.models import AudioDecodeError, Windows, cut_windows, load_audio
from audiosearch.models.audio_stream import stream_windows
from audiosearch.models.embedder import Embedded, Embedder, embed_files, encode_fn
from tests.synthetic import SR, sound

WINDOW_S = 2.0  # the baseline_model fixture's windows


class Recording:
    """The encoder's own encode function, noting the size of every batch it is given."""

    def __init__(self, encoder) -> None:
        self.encode, self.sizes = encode_fn(encoder), []

    def __call__(self, waves: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        self.sizes.append(len(waves))
        return self.encode(waves, lengths)


def _windows(i: int, seconds: float) -> Windows:
    return cut_windows(sound(i, seconds), SR, WINDOW_S)


def _check(result: Embedded, windows: Windows, encoder) -> None:
    """The item's vectors are what encoding its windows directly gives, with their times."""
    assert result.error is None
    np.testing.assert_allclose(result.vectors, encoder.encode_audio(windows.waves, SR, windows.lengths), atol=1e-6)
    np.testing.assert_array_equal(result.starts, windows.starts)
    np.testing.assert_array_equal(result.ends, windows.ends)


def _full_batches(total: int, size: int) -> list[int]:
    return [size] * (total // size) + ([total % size] if total % size else [])


@pytest.mark.parametrize("overlap", [True, False])
def test_results_in_order_equal_direct_encodes_in_full_batches(baseline_model, overlap: bool) -> None:
    seconds = [0.5, 3.0, 9.0, 1.0, 22.0, 5.0, 0.3, 7.5]  # 1 to 11 windows; the 11 span three batches of 4
    windows = [_windows(i, s) for i, s in enumerate(seconds)]
    encode = Recording(baseline_model)
    embedder = Embedder(encode, batch_size=4, overlap=overlap)
    results = list(embedder.embed((f"item-{i}", [w]) for i, w in enumerate(windows)))
    assert [r.key for r in results] == [f"item-{i}" for i in range(len(seconds))]
    for r, w in zip(results, windows, strict=True):
        _check(r, w, baseline_model)
    total = sum(len(w.waves) for w in windows)
    assert encode.sizes == _full_batches(total, 4) and embedder.batches == len(encode.sizes)


def test_overlap_on_and_off_give_identical_vectors(baseline_model) -> None:
    items = [(i, [_windows(i, s)]) for i, s in enumerate([4.0, 0.7, 13.0, 2.5])]
    on = list(Embedder(encode_fn(baseline_model), 3, overlap=True).embed(items))
    off = list(Embedder(encode_fn(baseline_model), 3, overlap=False).embed(items))
    for a, b in zip(on, off, strict=True):
        assert a.key == b.key
        np.testing.assert_array_equal(a.vectors, b.vectors)


def _write(path: Path, seconds: float, seed: int) -> Path:
    wave = np.concatenate([sound(seed + k, 1.0) for k in range(int(seconds))])
    sf.write(path, wave, SR, subtype="FLOAT")
    return path


def test_a_long_item_fed_as_many_chunks_shares_batches_with_short_ones(baseline_model, tmp_path: Path) -> None:
    long = _write(tmp_path / "long.wav", 25, seed=0)
    whole = cut_windows(load_audio(long, SR), SR, WINDOW_S)  # 12 windows (the 1 s tail is one more: 13)
    chunks = stream_windows(long, SR, WINDOW_S, chunk_windows=3, block_s=4.0)
    short = [_windows(20, 3.0), _windows(21, 1.0)]
    encode = Recording(baseline_model)
    results = list(Embedder(encode, batch_size=5).embed([("a", [short[0]]), ("long", chunks), ("b", [short[1]])]))
    assert [r.key for r in results] == ["a", "long", "b"]
    _check(results[0], short[0], baseline_model)
    _check(results[1], whole, baseline_model)
    _check(results[2], short[1], baseline_model)
    assert len(whole.waves) == 13 and encode.sizes == _full_batches(2 + 13 + 1, 5)


def test_pass_through_items_keep_their_place(baseline_model) -> None:
    w = _windows(3, 4.0)
    results = list(Embedder(encode_fn(baseline_model), 4).embed([("x", None), ("y", [w]), ("z", None), ("e", [])]))
    assert [r.key for r in results] == ["x", "y", "z", "e"]
    for r in (results[0], results[2], results[3]):
        assert (r.vectors, r.error) == (None, None)
    _check(results[1], w, baseline_model)


def _fails_after_one_chunk(first: Windows) -> Iterator[Windows]:
    yield first
    raise AudioDecodeError("broken.ogg: decode failed at 4 s (truncated)")


def test_an_item_failing_part_way_comes_back_with_its_error_and_spares_its_neighbours(
    baseline_model, tmp_path: Path
) -> None:
    before, after = _windows(10, 5.0), _windows(11, 3.0)  # 3 and 2 windows: batches of 4 mix all three items
    bad = tmp_path / "nan.wav"
    wave = np.concatenate([sound(12, 9.0), [np.nan], sound(13, 4.0)]).astype(np.float32)
    sf.write(bad, wave, SR, subtype="FLOAT")  # a NaN 9 s in: the stream fails in its fourth 3 s block
    items = [
        ("before", [before]),
        ("raises", _fails_after_one_chunk(_windows(14, 4.0))),
        ("nan", stream_windows(bad, SR, WINDOW_S, chunk_windows=1, block_s=3.0)),
        ("after", [after]),
    ]
    encode = Recording(baseline_model)
    results = list(Embedder(encode, batch_size=4).embed(items))
    assert [r.key for r in results] == ["before", "raises", "nan", "after"]
    _check(results[0], before, baseline_model)
    _check(results[3], after, baseline_model)
    assert results[1].vectors is None and results[1].error == "broken.ogg: decode failed at 4 s (truncated)"
    assert results[2].vectors is None and "NaN" in results[2].error and "at 9 s" in results[2].error
    assert sum(encode.sizes) == 3 + 2 + 4 + 2  # the failed items' windows read before the failure ran too


def test_embed_files_windows_as_the_model_config_says(baseline_model, tmp_path: Path) -> None:
    paths = [_write(tmp_path / f"{n}.wav", n, seed=n) for n in (1, 6, 3)]
    results = list(embed_files(baseline_model, paths, batch_size=2))
    assert [r.key for r in results] == paths
    for r, p in zip(results, paths, strict=True):
        _check(r, cut_windows(load_audio(p, SR), SR, baseline_model.config.window_seconds), baseline_model)
