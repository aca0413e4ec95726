"""Named model configurations, as data. A profile names towers; a checkpoint adds trained weights."""

from __future__ import annotations

import copy
from pathlib import Path

from models.config import ModelConfig, TowerConfig

CHECKPOINTS = Path(__file__).resolve().parent / "checkpoints"

PROFILES: dict[str, ModelConfig] = {
    # The paper's system: PaSST-S + RoBERTa-large, single linear projections to 1024-d.
    "paper": ModelConfig(
        name="paper",
        audio=TowerConfig("passt", {"arch": "passt_s_p16_s16_128_ap468", "checkpoint": None}),
        text=TowerConfig("roberta", {"source": "roberta-large"}),
    ),
    # Offline default: pretrained towers that install from the package index, trained projections.
    "lite": ModelConfig(
        name="lite",
        audio=TowerConfig("aisfx", {}),
        text=TowerConfig("minilm", {}),
        projection="linear",
        temperature_init=0.05,
        frozen_towers=["audio", "text"],
    ),
    # Zero-shot, nothing trained: YAMNet's AudioSet class scores mapped into MiniLM's sentence space
    # (models/encoders/bridge.py); the tied projection keeps the bridge's cosine scores.
    "bridge": ModelConfig(
        name="bridge",
        audio=TowerConfig("yamnet_bridge", {}),
        text=TowerConfig("minilm", {}),
        projection="tied",
        temperature_init=0.05,
        frozen_towers=["audio", "text"],
    ),
}


def profile(name: str) -> ModelConfig:
    return copy.deepcopy(PROFILES[name])
