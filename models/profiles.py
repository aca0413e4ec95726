"""Named model configurations, as data. A profile names towers; a checkpoint adds trained weights."""

from __future__ import annotations

import copy
import dataclasses
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
# The offline default is whichever profile scores best on held-out, out-of-domain data (README model card):
# today the zero-shot bridge, 2.5x the trained aisfx projections on booth/.
PROFILES["lite"] = dataclasses.replace(PROFILES["bridge"], name="lite")


def profile(name: str) -> ModelConfig:
    return copy.deepcopy(PROFILES[name])
