"""The `fusion` profile: bridge + residual from YAMNet's embedding and class scores (models/towers/cores/fusion.py).

Real towers, real audio, the real trainer. The 0 A.D. sound effects (interface cues left out) are split by
caption as scripts/eval_bridge.py splits them (20%, seed 0): 24 held-out captions on 177 clips that neither
the test's training run nor the shipped checkpoint trained on. Measured on 2 CPU cores (2026-11-26): the bridge
scores mAP@10 0.31 there, three epochs of training from it about 0.40, the shipped checkpoint 0.40 (chance 0.10),
R@10 0.67 (chance 0.30).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from audiosearch.models import DualEncoder, load_audio, load_model
from audiosearch.models.profiles import CHECKPOINTS, profile
from audiosearch.training import (
    AudioFeatures,
    CaptionRow,
    EvalSet,
    PairSet,
    TrainConfig,
    caption_group,
    chance_metrics,
    compute_audio_features,
    compute_text_features,
    evaluate,
    group_split,
    load_caption_csv,
    train_projections,
)
from audiosearch.training.data import query_relevance
from audiosearch.training.fusion_init import init_fusion

SR = 16000


@pytest.fixture(scope="module")
def untrained() -> DualEncoder:
    return init_fusion(DualEncoder(profile("fusion")))


@pytest.fixture(scope="module")
def shipped() -> DualEncoder:
    return load_model("fusion")


@pytest.fixture(scope="module")
def esc_waves(shared_data: Path) -> list[np.ndarray]:
    rows = [r for r in load_caption_csv(shared_data / "esc10" / "captions.csv") if r.meta["fold"] == "5"]
    return [load_audio(r.path, SR) for r in rows[::10]]  # 8 clips, several classes


@pytest.fixture(scope="module")
def oad_split(shared_data: Path, untrained: DualEncoder) -> tuple[list[CaptionRow], list[CaptionRow], AudioFeatures]:
    """(train rows, held-out rows, fusion-tower features of every clip, train clips then held-out clips)."""
    rows = [
        r
        for r in load_caption_csv(shared_data / "0ad" / "captions.csv")
        if not r.meta["category"].startswith("interface/")
    ]
    train, held = group_split(rows, caption_group, 0.2, seed=0)
    paths = sorted({r.path for r in train}) + sorted({r.path for r in held})
    return train, held, compute_audio_features(untrained, paths)


def _subset(feats: AudioFeatures, clips: list[int]) -> AudioFeatures:
    windows = [feats.windows[feats.offsets[i] : feats.offsets[i + 1]] for i in clips]
    counts = torch.tensor([len(w) for w in windows])
    return AudioFeatures(torch.cat(windows), torch.cat([torch.zeros(1, dtype=torch.int64), counts.cumsum(0)]))


def held_out_set(model: DualEncoder, train: list[CaptionRow], held: list[CaptionRow], feats: AudioFeatures) -> EvalSet:
    paths, texts, relevance = query_relevance(held)  # paths sorted as in the fixture
    n_train = len({r.path for r in train})
    audio = _subset(feats, list(range(n_train, n_train + len(paths))))
    return EvalSet("0ad-held", audio, compute_text_features(model, texts), relevance)


def training_pairs(model: DualEncoder, train: list[CaptionRow], feats: AudioFeatures) -> PairSet:
    clips = sorted({r.path for r in train})
    texts = sorted({r.caption for r in train})
    return PairSet(
        audio=_subset(feats, list(range(len(clips)))),
        text=compute_text_features(model, texts),
        audio_index=torch.tensor([clips.index(r.path) for r in train]),
        text_index=torch.tensor([texts.index(r.caption) for r in train]),
    )


def test_untrained_fusion_is_the_bridge(untrained: DualEncoder, esc_waves: list[np.ndarray]) -> None:
    bridge = load_model("bridge")
    queries = ["a dog barks", "rain falling on a roof"]
    np.testing.assert_allclose(untrained.encode_audio(esc_waves, SR), bridge.encode_audio(esc_waves, SR), atol=1e-6)
    np.testing.assert_allclose(untrained.encode_text(queries), bridge.encode_text(queries), atol=1e-6)
    assert not untrained.text_proj.weight.requires_grad  # queries stay plain MiniLM through training


@pytest.mark.slow
def test_shipped_checkpoint_loads_offline_and_encodes(
    shipped: DualEncoder, untrained: DualEncoder, esc_waves: list[np.ndarray]
) -> None:
    assert (CHECKPOINTS / "fusion" / "MODEL_CARD.md").is_file()
    assert shipped.fingerprint.startswith("fusion-")
    audio = shipped.encode_audio(esc_waves, SR)
    assert audio.shape == (len(esc_waves), 384)
    np.testing.assert_allclose(np.linalg.norm(audio, axis=1), 1.0, atol=1e-5)
    bridge_audio = untrained.encode_audio(esc_waves, SR)
    cos = (audio * bridge_audio).sum(axis=1)
    assert (cos > 0.5).all() and (cos < 0.999).all()  # a trained residual, on top of the bridge
    queries = ["a dog barks", "a helicopter flying overhead"]
    np.testing.assert_allclose(shipped.encode_text(queries), untrained.encode_text(queries), atol=1e-6)


@pytest.mark.slow
def test_training_from_the_bridge_improves_held_out_captions(untrained: DualEncoder, oad_split) -> None:
    train, held, feats = oad_split
    model = init_fusion(DualEncoder(profile("fusion")))
    held_set = held_out_set(model, train, held, feats)
    start = evaluate(model, held_set)["mAP@10"]
    train_projections(model, training_pairs(model, train, feats), (), TrainConfig(epochs=3, lr=1e-3, seed=0))
    after = evaluate(model, held_set)["mAP@10"]
    assert start == pytest.approx(evaluate(untrained, held_set)["mAP@10"])
    assert after > start + 0.05, (start, after)


@pytest.mark.slow
def test_shipped_checkpoint_retrieves_held_out_captions(
    shipped: DualEncoder, untrained: DualEncoder, oad_split
) -> None:
    """The trained residual beats the zero-shot bridge it starts from on captions it never saw, well above chance.
    (Measured 2026-12-03: shipped mAP@10 0.301 / R@10 0.583, bridge 0.260 / 0.458, chance 0.103 / 0.298; the same
    figures on the commit before the package reorganisation, so lower than the model card's 0.399 for a reason
    outside this code, left open.)"""
    train, held, feats = oad_split
    held_set = held_out_set(shipped, train, held, feats)
    metrics = evaluate(shipped, held_set)
    bridge = evaluate(untrained, held_out_set(untrained, train, held, feats))
    chance = chance_metrics(held_set.relevance.sum(1), held_set.relevance.shape[1])
    # Some captions name many clips, so chance R@10 is 0.30 here; mAP@10 is 0.10.
    assert metrics["mAP@10"] > bridge["mAP@10"] and metrics["R@10"] > bridge["R@10"], (metrics, bridge)
    assert metrics["mAP@10"] > 2.5 * chance["mAP@10"] and metrics["R@10"] > 1.5 * chance["R@10"], (metrics, chance)
