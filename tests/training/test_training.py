"""Training pieces on real data: caption CSV loading and its errors, splits, positives, the trainer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from audiosearch import models
from audiosearch.core.errors import InvalidInputError
from audiosearch.models.profiles import profile
from audiosearch.training import (
    DatasetError,
    TrainConfig,
    compute_audio_features,
    group_split,
    load_caption_csv,
    pairs_from_rows,
    path_stem_group,
    reset_projections,
    train_projections,
)
from audiosearch.training.trainer import PairSet, _lr_lambda, positive_groups

Small = tuple[models.DualEncoder, PairSet]


def test_loads_the_shared_csv_layouts(shared_data: Path) -> None:
    esc = load_caption_csv(shared_data / "esc10" / "captions.csv")
    assert len(esc) == 400 and {r.meta["fold"] for r in esc} == {"1", "2", "3", "4", "5"}
    assert esc[0].path.is_file() and esc[0].clip_id.startswith("esc10/")
    booth = load_caption_csv(shared_data / "booth" / "labels.csv", caption_column="label")
    assert len(booth) == 223 and all(r.caption for r in booth)


def _write(tmp_path: Path, text: str) -> Path:
    f = tmp_path / "captions.csv"
    f.write_text(text)
    return f


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("file,caption\na.ogg,a dog\n", "missing column(s) path"),
        ("path,caption\nmissing.ogg,a dog\n", "line 2: audio file"),
        ("path,caption\nmissing.ogg,  \n", "line 2 (missing.ogg): empty caption"),
        ("path,caption\n", "no rows"),
    ],
)
def test_bad_caption_files_name_file_and_row(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(DatasetError, match=r"captions\.csv") as err:
        load_caption_csv(_write(tmp_path, body))
    assert message in str(err.value)
    assert isinstance(err.value, models.AudioSearchError) and isinstance(err.value, ValueError)


def test_group_split_keeps_numbered_variants_together(shared_data: Path) -> None:
    rows = load_caption_csv(shared_data / "0ad" / "captions.csv")
    kept, held = group_split(rows, path_stem_group, 0.2, seed=1)
    assert {path_stem_group(r) for r in kept}.isdisjoint({path_stem_group(r) for r in held})
    assert 0.05 < len(held) / len(rows) < 0.5
    assert [r.clip_id for r in group_split(rows, path_stem_group, 0.2, seed=1)[1]] == [r.clip_id for r in held]


def test_clips_sharing_a_caption_are_positives() -> None:
    # clips 0 and 1 share caption 0; clip 2 has two captions (1, 2); clip 3 is alone
    groups = positive_groups(torch.tensor([0, 1, 2, 2, 3]), torch.tensor([0, 0, 1, 2, 3]))
    assert groups.tolist() == [0, 0, 1, 1, 2]


def test_schedule_warms_up_then_decays() -> None:
    f = _lr_lambda(100, TrainConfig(warmup_fraction=0.1, min_lr_ratio=0.01))
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(50) < f(10) and f(99) == pytest.approx(0.01, abs=0.01)


def test_feature_cache_needs_frozen_towers(small_pairs: Small, shared_data: Path) -> None:
    model, _ = small_pairs
    model.text_tower.requires_grad_(True)  # a trainable tower would make cached features go stale
    try:
        with pytest.raises(InvalidInputError, match="frozen"):
            compute_audio_features(model, [shared_data / "animals_cc0" / "animals" / "cat.ogg"])
    finally:
        model.text_tower.requires_grad_(False)


@pytest.fixture(scope="module")
def small_pairs(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Small:
    # 25 short clips with distinct captions: enough to see the loss fall, cheap to embed (~0.3 s each)
    rows = [
        r
        for r in load_caption_csv(shared_data / "sonicpi" / "captions.csv")
        if not r.meta["category"].startswith("musical")
    ]
    rows += load_caption_csv(shared_data / "animals_cc0" / "captions.csv")
    model = models.DualEncoder(profile("lite"))  # bare profile: independent of the shipped checkpoint
    return model, pairs_from_rows(model, rows, str(tmp_path_factory.mktemp("features")))


def test_trainer_fits_and_is_reproducible(small_pairs: Small) -> None:
    model, pairs = small_pairs
    cfg = TrainConfig(epochs=20, batch_size=8, lr=2e-3, seed=3)
    first = train_projections(reset_projections(model, 3), pairs, config=cfg)
    losses = [h["loss"] for h in first.history]
    assert losses[-1] < 0.5 * losses[0], losses
    weights = model.audio_proj.weight.detach().clone()
    train_projections(reset_projections(model, 3), pairs, config=cfg)
    assert torch.equal(weights, model.audio_proj.weight)
    assert not model.training


def test_cached_features_are_reused(small_pairs: Small, shared_data: Path, tmp_path: Path) -> None:
    model, _ = small_pairs
    path = shared_data / "animals_cc0" / "animals" / "cat.ogg"
    first = compute_audio_features(model, [path], tmp_path)
    assert len(list(tmp_path.rglob("*.npy"))) == 1
    again = compute_audio_features(model, [path], tmp_path)
    np.testing.assert_array_equal(first.windows.numpy(), again.windows.numpy())
