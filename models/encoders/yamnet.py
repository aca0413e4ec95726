"""YAMNet (Google's AudioSet tagger, MobileNet v1) as an audio tower: 1024-d embedding or 521 class scores.

The network runs with onnxruntime from models/assets/yamnet/yamnet.onnx (an int8 export, rewritten
by scripts/vendor_yamnet.py to take a batch of float log-mel patches and to return the pooled
1024-d embedding plus float logits; see PROVENANCE.md there). The front end is re-implemented here
as YAMNet's features.py defines it: 16 kHz, periodic Hann of 400 samples, hop 160, |rfft| of 512,
64 HTK mel bins 125-7500 Hz with TensorFlow's weight matrix, log(mel + 0.001), then patches of 96
frames (0.96 s) every 48 frames. A clip shorter than one patch is zero-padded to one, not looped.

Per-patch outputs are pooled per window by max: mean pooling lets "Silence" swamp sparse clips
(/work/shared/quality-notes.md).
"""

from __future__ import annotations

import csv
import logging
import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

from models.encoders.base import AudioTower, register_audio
from models.errors import InvalidInputError, ModelLoadError

log = logging.getLogger(__name__)

ASSETS = Path(__file__).resolve().parents[1] / "assets" / "yamnet"
MODEL = ASSETS / "yamnet.onnx"
CLASS_MAP = ASSETS / "yamnet_class_map.csv"

SAMPLE_RATE = 16000
WIN, HOP, N_FFT = 400, 160, 512  # 25 ms window, 10 ms hop, next power of two
N_MELS, FMIN, FMAX = 64, 125.0, 7500.0
LOG_OFFSET = 0.001
PATCH, PATCH_HOP = 96, 48  # frames: 0.96 s patches every 0.48 s
PATCH_SAMPLES = (PATCH - 1) * HOP + WIN  # 15600 samples (0.975 s) make one patch
PATCH_HOP_SAMPLES = PATCH_HOP * HOP  # 7680
N_CLASSES, EMBED_DIM = 521, 1024


def patch_count(n_samples: int | torch.Tensor) -> torch.Tensor:
    """Patches YAMNet makes of n samples: one for anything up to 0.975 s, then one per started 0.48 s.

    This is features.py's pad_waveform rule, so the last patch may hold up to 0.48 s of padding.
    """
    n = torch.as_tensor(n_samples, dtype=torch.float64)
    return 1 + torch.ceil((n - PATCH_SAMPLES).clamp(min=0) / PATCH_HOP_SAMPLES).long()


def tf_mel_matrix() -> np.ndarray:
    """(257, 64) weights as tf.signal.linear_to_mel_weight_matrix builds them.

    Unlike librosa's HTK option, the triangles are linear in mel (not Hz) and unnormalised, and the
    DC bin gets no weight.
    """

    def hz_to_mel(f: np.ndarray) -> np.ndarray:
        return 1127.0 * np.log1p(f / 700.0)

    bins = N_FFT // 2 + 1
    spec_mel = hz_to_mel(np.linspace(0.0, SAMPLE_RATE / 2, bins))[1:, None]  # (256, 1), DC dropped
    edges = np.linspace(hz_to_mel(np.array(FMIN)), hz_to_mel(np.array(FMAX)), N_MELS + 2)
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (spec_mel - lower) / (center - lower)
    falling = (upper - spec_mel) / (upper - center)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    return np.pad(weights, ((1, 0), (0, 0))).astype(np.float32)


class YamnetFrontEnd(nn.Module):
    """Waveforms (B, T) at 16 kHz -> log-mel patches (B, P, 96, 64), P = patch_count(T)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("window", torch.hann_window(WIN, periodic=True), persistent=False)
        self.register_buffer("mel", torch.from_numpy(tf_mel_matrix()), persistent=False)

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        # Autocast would run the mel product in fp16; log(mel + 0.001) needs the small values exact.
        with torch.autocast(waveforms.device.type, enabled=False):
            return self.patches(self.log_mel(waveforms))

    def log_mel(self, waveforms: torch.Tensor) -> torch.Tensor:
        """(B, T) -> (B, frames, 64), T zero-padded to a whole number of patches first."""
        x = waveforms.float()
        n_patches = int(patch_count(x.shape[1]))
        width = PATCH_SAMPLES + (n_patches - 1) * PATCH_HOP_SAMPLES
        x = nn.functional.pad(x, (0, width - x.shape[1]))
        # TF frames [t*hop, t*hop + 400) and zero-pads each frame at its end to 512; torch.stft would
        # centre the 400-sample window in 512 samples instead, so frame by hand.
        frames = x.unfold(1, WIN, HOP) * self.window  # (B, frames, 400)
        return torch.log(_rfft_magnitude(frames) @ self.mel + LOG_OFFSET)  # (B, frames, 64)

    @staticmethod
    def patches(log_mel: torch.Tensor) -> torch.Tensor:
        return log_mel.unfold(1, PATCH, PATCH_HOP).transpose(2, 3)  # (B, P, 96, 64)


class YamnetTagger(AudioTower):
    """Window -> max-pooled 1024-d YAMNet embedding; `scores` also gives the 521 class probabilities.

    `batch_patches` bounds one onnxruntime call (a 10 s window is 20 patches). `threads` 0 lets
    onnxruntime use every physical core.
    """

    sample_rate = SAMPLE_RATE
    dim = EMBED_DIM
    crops_padding = True  # patches past `lengths` are skipped, so trailing zeros change nothing

    def __init__(self, model: str | None = None, batch_patches: int = 256, threads: int = 0) -> None:
        super().__init__()
        if batch_patches <= 0:
            raise ModelLoadError(f"yamnet batch_patches must be positive, got {batch_patches}")
        self.batch_patches, self.model_path, self.threads = batch_patches, Path(model) if model else MODEL, threads
        self.frontend = YamnetFrontEnd()
        self.session = _session(self.model_path, threads)
        self.class_names = load_class_names()

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return self.scores(waveforms, lengths)[1]

    def scores(
        self, waveforms: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T) -> class probabilities (B, 521) and embeddings (B, 1024), each max over the patches
        that hold real audio (patches made only of padding are skipped, not scored)."""
        if waveforms.ndim != 2:
            raise InvalidInputError(f"waveforms must be (batch, samples), got shape {tuple(waveforms.shape)}")
        patches = self.frontend(waveforms)  # (B, P, 96, 64)
        b, p = patches.shape[:2]
        real = torch.full((b,), waveforms.shape[1]) if lengths is None else lengths.cpu().clamp(max=waveforms.shape[1])
        valid = torch.arange(p)[None, :] < patch_count(real)[:, None]  # (B, P)
        emb, logits = self.run(patches.reshape(b * p, PATCH, N_MELS)[valid.reshape(-1).to(patches.device)])
        probs = _masked_max(torch.sigmoid(logits), valid)
        return probs.to(waveforms.device), _masked_max(emb, valid).to(waveforms.device)

    def run(self, patches: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-mel patches (M, 96, 64) -> embeddings (M, 1024) and logits (M, 521), on the CPU."""
        x = patches.detach().float().cpu().numpy()[:, None]  # (M, 1, 96, 64)
        embs, logits = [], []
        for i in range(0, len(x), self.batch_patches):
            e, lg = self.session.run(None, {"log_mel": np.ascontiguousarray(x[i : i + self.batch_patches])})
            embs.append(e)
            logits.append(lg)
        return torch.from_numpy(np.concatenate(embs)), torch.from_numpy(np.concatenate(logits))

    # An onnxruntime session cannot be pickled or deep-copied: copies reopen the model file instead.
    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "session"}

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        self.session = _session(self.model_path, self.threads)


def _rfft_magnitude(frames: torch.Tensor) -> torch.Tensor:
    """|rfft(frames, 512)|. On the CPU, scipy's FFT and numpy's complex abs take a third of the time of
    torch's (whose complex abs alone costs as much as the FFT): this front end is half of indexing time."""
    if frames.device.type != "cpu" or frames.requires_grad:
        return torch.fft.rfft(frames, n=N_FFT).abs()
    import scipy.fft

    spec = scipy.fft.rfft(frames.numpy(), n=N_FFT, workers=torch.get_num_threads())
    return torch.from_numpy(np.abs(spec))


def _masked_max(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """values (M, D) of the M true entries of valid (B, P) -> max over each row's entries (B, D)."""
    b, p = valid.shape
    full = torch.full((b * p, values.shape[1]), -math.inf, dtype=values.dtype)
    full[valid.reshape(-1)] = values
    return full.view(b, p, -1).amax(dim=1)


def _session(path: Path, threads: int) -> object:
    import onnxruntime as ort

    if not path.is_file():
        raise ModelLoadError(f"YAMNet model not found: {path} (re-create it with scripts/vendor_yamnet.py)")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    # Spinning pool threads burn the cores that decode workers and the text tower need between calls.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3  # onnxruntime warns about the CUDA provider falling back for int8 nodes
    providers = ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=providers)
    except Exception as err:
        raise ModelLoadError(f"cannot load YAMNet model {path}: {str(err).splitlines()[0][:200]}") from None


def load_class_names(path: Path = CLASS_MAP) -> list[str]:
    """The 521 AudioSet display names, in output order."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            names = [row["display_name"] for row in csv.DictReader(f)]
    except (OSError, KeyError) as err:
        raise ModelLoadError(f"cannot read YAMNet class map {path}: {err}") from None
    if len(names) != N_CLASSES:
        raise ModelLoadError(f"{path}: expected {N_CLASSES} classes, found {len(names)}")
    return names


@register_audio("yamnet")
def build_yamnet(**options: object) -> YamnetTagger:
    return YamnetTagger(**options)  # type: ignore[arg-type]
