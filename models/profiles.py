"""Named model configurations, as data. A profile names towers; a checkpoint adds trained weights."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

from audiosearch.models.config import ModelConfig, TowerConfig

CHECKPOINTS = Path(__file__).resolve().parent / "checkpoints"

PROFILES: dict[str, ModelConfig] = {
    # The paper's system: PaSST-S + RoBERTa-large, single linear projections to 1024-d. Bare, it starts from
    # PaSST's AudioSet weights (hear21passt) and the hub's roberta-large with random projections: a start for
    # training, refused by index/serve/search. Trained weights: `audiosearch import-checkpoint` (models.reference).
    # Captions and clips are embedded as the reference code does: lower case, ASCII punctuation deleted, at most
    # 32 tokens; a clip up to 30 s is the mean of its 10 s windows (audiosearch.models.aggregate).
    "paper": ModelConfig(
        name="paper",
        audio=TowerConfig("passt", {"arch": "passt_s_p16_s16_128_ap468", "checkpoint": None, "pretrained": True}),
        text=TowerConfig("roberta", {"source": "roberta-large", "normalize_text": "delete", "max_tokens": 32}),
        aggregate="mean",
    ),
    # Pretrained towers that install from the package index, projections trained on shippable data
    # (models/checkpoints/aisfx). Good in its training domain, weak outside it (see the README's model card).
    "aisfx": ModelConfig(
        name="aisfx",
        audio=TowerConfig("aisfx", {}),
        text=TowerConfig("minilm", {}),
        projection="linear",
        temperature_init=0.05,
        frozen_towers=["audio", "text"],
    ),
    # Zero-shot, nothing trained: YAMNet's AudioSet class scores mapped into MiniLM's sentence space
    # (models/towers/modules/bridge.py); the tied projection keeps the bridge's cosine scores.
    "bridge": ModelConfig(
        name="bridge",
        audio=TowerConfig("yamnet_bridge", {}),
        text=TowerConfig("minilm", {}),
        embed_dim=384,  # MiniLM's own space; before vectors had a dimension per profile, padded to 1024
        projection="tied",
        temperature_init=0.05,
        frozen_towers=["audio", "text"],
        supersedes=[{"fingerprint": "bridge-3efdfa4129499bf6", "dim": 1024}],
    ),
    # The bridge plus a learned residual from YAMNet's 1024-d embedding and class scores
    # (models/towers/cores/fusion.py); text stays plain MiniLM through an identity projection. Its trained
    # weights are models/checkpoints/fusion (scripts/train_fusion.py); the bare profile's projections are
    # random until audiosearch.training.fusion_init.init_fusion makes it equal the bridge.
    "fusion": ModelConfig(
        name="fusion",
        audio=TowerConfig("yamnet_fusion", {"parts": ["embedding", "scores"]}),
        text=TowerConfig("minilm", {}),
        embed_dim=384,
        projection="linear",
        temperature_init=0.05,
        frozen_towers=["audio", "text"],
    ),
}
# The offline default is whichever profile scores best on held-out data without losing out of domain (the
# model card, docs/model-card.md): today `fusion`, above the zero-shot bridge on data it never saw.
DEFAULT = "fusion"
PROFILES["lite"] = dataclasses.replace(PROFILES[DEFAULT], name="lite")
# `lite` loads the default's shipped checkpoint (audiosearch.models.checkpoint): one copy of the weights, and the same
# fingerprint as the profile it names, so an index built with either answers queries from both.
ALIASES: dict[str, str] = {"lite": DEFAULT}


def profile(name: str) -> ModelConfig:
    return copy.deepcopy(PROFILES[name])
