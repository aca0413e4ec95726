"""cut_windows: fixed windows with start/end seconds, padding, hop, and refusal of bad input."""

from __future__ import annotations

import numpy as np
import pytest

from audiosearch.models import cut_windows


def test_short_clip_gives_one_padded_window() -> None:
    w = cut_windows(np.ones(3 * 100, dtype=np.float32), 100, window_s=10)
    assert w.waves.shape == (1, 1000)
    assert (w.starts[0], w.ends[0], w.lengths[0]) == (0.0, 3.0, 300)
    assert w.waves[0, 300:].sum() == 0


def test_long_clip_windows_cover_it_with_right_timestamps() -> None:
    w = cut_windows(np.arange(35 * 100, dtype=np.float32), 100, window_s=10)
    assert list(w.starts) == [0, 10, 20, 30]
    assert list(w.ends) == [10, 20, 30, 35]
    assert w.waves[3, 0] == 3000 and w.waves[3, 500:].sum() == 0


def test_overlapping_hop() -> None:
    wave = np.arange(22 * 100, dtype=np.float32)
    w = cut_windows(wave, 100, window_s=10, hop_s=5)
    assert list(w.starts) == [0, 5, 10, 15]
    assert list(w.ends) == [10, 15, 20, 22] and list(w.lengths) == [1000, 1000, 1000, 700]
    np.testing.assert_array_equal(w.waves[1], wave[500:1500])  # each window is its own stretch of the input
    np.testing.assert_array_equal(w.waves[3, :700], wave[1500:])


def test_tiny_tail_is_not_a_window_of_its_own() -> None:
    w = cut_windows(np.arange(1002, dtype=np.float32), 100, window_s=10)
    assert (list(w.starts), list(w.ends), list(w.lengths)) == ([0], [10], [1000])
    np.testing.assert_array_equal(w.waves[0], np.arange(1000))


@pytest.mark.parametrize("wave", [np.zeros(0), np.array([np.nan, 1.0]), np.zeros((2, 100))])
def test_bad_input(wave: np.ndarray) -> None:
    with pytest.raises(ValueError):
        cut_windows(wave.astype(np.float32), 100)
