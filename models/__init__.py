"""The dual-encoder package: audio and text to one vector space, shared by indexer, service and training."""

from models.audio import AUDIO_EXTENSIONS, Windows, cut_windows, load_audio, probe
from models.checkpoint import load_model, save_model
from models.config import ModelConfig, TowerConfig
from models.dual_encoder import DualEncoder
from models.errors import AudioDecodeError, AudioSearchError, InvalidInputError, ModelLoadError
from models.losses import nt_xent
from models.profiles import PROFILES

__all__ = [
    "AUDIO_EXTENSIONS",
    "PROFILES",
    "AudioDecodeError",
    "AudioSearchError",
    "DualEncoder",
    "InvalidInputError",
    "ModelConfig",
    "ModelLoadError",
    "TowerConfig",
    "Windows",
    "cut_windows",
    "load_audio",
    "load_model",
    "nt_xent",
    "probe",
    "save_model",
]
