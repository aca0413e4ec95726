"""Retrieval metrics on hand-computed cases (DCASE protocol: captions x unique audios)."""

import numpy as np
import pytest
import torch

from audiosearch.core.errors import InvalidInputError
from audiosearch.training.metrics import (
    chance_metrics,
    first_relevant_rank,
    precision_at_k,
    retrieval_metrics,
)


def test_single_relevant_audio_per_caption() -> None:
    # 4 captions x 12 audios; target ranks 1, 3, 7 and 11 by construction.
    sim = np.tile(np.linspace(1.0, 0.0, 12), (4, 1))  # audio j has rank j + 1 for every caption
    targets = [0, 2, 6, 10]
    assert first_relevant_rank(sim, targets).tolist() == [1, 3, 7, 11]
    m = retrieval_metrics(sim, targets)
    assert m["mAP@10"] == pytest.approx((1 + 1 / 3 + 1 / 7 + 0) / 4)
    assert m["R@1"] == pytest.approx(0.25)
    assert m["R@5"] == pytest.approx(0.5)
    assert m["R@10"] == pytest.approx(0.75)


def test_several_captions_of_one_audio_are_ranked_separately() -> None:
    # Two captions of audio 1 and one of audio 0 (Clotho has 5 captions per clip).
    sim = torch.tensor([[0.9, 0.1, 0.5], [0.2, 0.8, 0.1], [0.7, 0.6, 0.65]])
    m = retrieval_metrics(sim, torch.tensor([0, 1, 1]))
    assert m["R@1"] == pytest.approx(2 / 3)
    assert m["mAP@10"] == pytest.approx((1 + 1 + 1 / 3) / 3)


def test_multi_relevant_uses_first_hit() -> None:
    sim = np.array([[0.1, 0.9, 0.8, 0.3], [0.9, 0.8, 0.7, 0.1]])
    rel = np.array([[True, False, True, False], [False, False, False, True]])
    assert first_relevant_rank(sim, rel).tolist() == [2, 4]
    m = retrieval_metrics(sim, rel)
    assert m["mAP@10"] == pytest.approx((1 / 2 + 1 / 4) / 2)
    assert m["R@1"] == 0.0
    assert precision_at_k(sim, rel, k=2) == pytest.approx((1 / 2 + 0) / 2)


def test_ties_count_against_the_query() -> None:
    # A constant score must not look perfect because sort order happens to favour the target.
    m = retrieval_metrics(np.zeros((2, 5)), [0, 4])
    assert m["R@1"] == 0.0
    assert m["mAP@10"] == pytest.approx(1 / 5)


def test_chance_matches_simulation_and_known_values() -> None:
    # One relevant out of N: R@k = k / N, mAP@10 = H(10) / N.
    c = chance_metrics([1], 100)
    assert c["R@10"] == pytest.approx(0.10)
    assert c["mAP@10"] == pytest.approx(sum(1 / r for r in range(1, 11)) / 100)
    # Monte Carlo check of the multi-relevant case (8 relevant out of 80, as ESC-10 fold 5).
    rng = np.random.default_rng(0)
    rel = np.zeros((4000, 80), dtype=bool)
    rel[:, :8] = True
    sim = rng.random((4000, 80))
    sim_m, exact = retrieval_metrics(sim, rel), chance_metrics([8] * 4000, 80)
    for k in exact:
        assert sim_m[k] == pytest.approx(exact[k], abs=0.02)


@pytest.mark.parametrize(
    ("sim", "targets"),
    [
        (np.zeros((2, 3)), [0, 3]),  # index out of range
        (np.zeros((2, 3)), [0]),  # fewer targets than captions
        (np.zeros((2, 3)), np.zeros((2, 3), dtype=bool)),  # a query with nothing relevant
        (np.zeros(3), [0]),  # not a matrix
    ],
)
def test_bad_input_is_rejected(sim: np.ndarray, targets: object) -> None:
    with pytest.raises(InvalidInputError):
        retrieval_metrics(sim, targets)
