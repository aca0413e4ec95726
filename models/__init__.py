"""The dual-encoder package: audio and text to one vector space, shared by indexer, service and training.

Exports resolve lazily (models/lazy.py), so decode workers and the slim runtime stay free of torch:
`load_encoder` (inference, numpy at the boundary) imports torch only for models that need it.
"""

from __future__ import annotations

from models.lazy import lazy_exports

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
    "Encoder": "models.encoder",
    "load_encoder": "models.encoder",
    "AudioDecodeError": "models.errors",
    "AudioSearchError": "models.errors",
    "InvalidInputError": "models.errors",
    "ModelLoadError": "models.errors",
    "nt_xent": "models.losses",
    "PROFILES": "models.profiles",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_exports(__name__, _EXPORTS, globals())
