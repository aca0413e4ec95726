"""The dual-encoder package: audio and text to one vector space, shared by indexer, service and training.

Exports resolve lazily (PEP 562): decode worker processes import `models.audio` alone, and must not pay
for importing torch and transformers (about 2 s of CPU each on a small machine).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "AUDIO_EXTENSIONS": "models.audio",
    "Windows": "models.audio",
    "cut_windows": "models.audio",
    "load_audio": "models.audio",
    "probe": "models.audio",
    "load_model": "models.checkpoint",
    "save_model": "models.checkpoint",
    "ModelConfig": "models.config",
    "TowerConfig": "models.config",
    "DualEncoder": "models.dual_encoder",
    "AudioDecodeError": "models.errors",
    "AudioSearchError": "models.errors",
    "InvalidInputError": "models.errors",
    "ModelLoadError": "models.errors",
    "nt_xent": "models.losses",
    "PROFILES": "models.profiles",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'models' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value
