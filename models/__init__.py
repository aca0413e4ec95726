"""The dual-encoder package: audio and text to one vector space, shared by indexer, service and training.

Exports resolve lazily (core/lazy.py), so decode workers and the slim runtime stay free of torch:
`load_encoder` (inference, numpy at the boundary) imports torch only for models that need it.
"""

from __future__ import annotations

from audiosearch.core.lazy import lazy_exports

_EXPORTS = {
    "AUDIO_EXTENSIONS": "audiosearch.models.audio",
    "Windows": "audiosearch.models.audio",
    "cut_windows": "audiosearch.models.audio",
    "load_audio": "audiosearch.models.audio",
    "probe": "audiosearch.models.audio",
    "load_model": "audiosearch.models.checkpoint",
    "save_model": "audiosearch.models.checkpoint",
    "ModelConfig": "audiosearch.models.config",
    "TowerConfig": "audiosearch.models.config",
    "DualEncoder": "audiosearch.models.dual_encoder",
    "Encoder": "audiosearch.models.encoder",
    "load_encoder": "audiosearch.models.encoder",
    "AudioDecodeError": "audiosearch.core.errors",
    "AudioSearchError": "audiosearch.core.errors",
    "InvalidInputError": "audiosearch.core.errors",
    "ModelLoadError": "audiosearch.core.errors",
    "nt_xent": "audiosearch.models.losses",
    "PROFILES": "audiosearch.models.profiles",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_exports(__name__, _EXPORTS, globals())
