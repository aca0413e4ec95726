"""YAMNet (Google's AudioSet tagger, MobileNet v1): 1024-d embedding and 521 class scores per window, in numpy.

The network runs with onnxruntime from models/assets/yamnet/yamnet.onnx (an int8 export, rewritten by
scripts/vendor_yamnet.py to take a batch of float log-mel patches and to return the pooled 1024-d embedding
plus float logits; see PROVENANCE.md there). The front end is YAMNet's features.py: 16 kHz, periodic Hann of
400 samples, hop 160, |rfft| of 512, 64 HTK mel bins 125-7500 Hz with TensorFlow's weight matrix,
log(mel + 0.001), then patches of 96 frames (0.96 s) every 48 frames. A clip shorter than one patch is
zero-padded to one, not looped.

Per-patch outputs are pooled per window by max: mean pooling lets "Silence" swamp sparse clips
(docs/model-card.md). Patches made only of padding (past a row's `lengths`) are skipped.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import scipy.fft
from numpy.lib.stride_tricks import sliding_window_view

from audiosearch.core.errors import InvalidInputError, ModelLoadError
from audiosearch.models.registry import audio_core

ASSETS = Path(__file__).resolve().parents[2] / "assets" / "yamnet"
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


def patch_count(n_samples: int | np.ndarray) -> np.ndarray:
    """Patches YAMNet makes of n samples: one for anything up to 0.975 s, then one per started 0.48 s.

    This is features.py's pad_waveform rule, so the last patch may hold up to 0.48 s of padding.
    """
    n = np.asarray(n_samples, dtype=np.float64)
    return 1 + np.ceil(np.maximum(n - PATCH_SAMPLES, 0) / PATCH_HOP_SAMPLES).astype(np.int64)


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


# The periodic Hann window as torch.hann_window(400) computes it in float32, stored rather than recomputed:
# the int8 network turns the last-bit differences of numpy's cos into a cosine of 0.993 on some clips, and
# these values keep vectors identical to indexes built by earlier versions (hann_window_400.npy, PROVENANCE.md).
_WINDOW = np.load(ASSETS / "hann_window_400.npy")
_MEL = tf_mel_matrix()


def log_mel(waves: np.ndarray, workers: int = 1) -> np.ndarray:
    """(B, T) float32 at 16 kHz -> (B, frames, 64), T zero-padded to a whole number of patches first.

    One FFT worker by default: on 2 cores two were slower (60 vs 87 ms for 24 windows of 10 s)."""
    x = np.asarray(waves, dtype=np.float32)
    n_patches = int(patch_count(x.shape[1]))
    width = PATCH_SAMPLES + (n_patches - 1) * PATCH_HOP_SAMPLES
    x = np.pad(x, ((0, 0), (0, width - x.shape[1])))
    # TF frames [t*hop, t*hop + 400) and zero-pads each frame at its end to 512 (not a centred window).
    frames = sliding_window_view(x, WIN, axis=1)[:, ::HOP] * _WINDOW  # (B, frames, 400)
    magnitude = np.abs(scipy.fft.rfft(frames, n=N_FFT, axis=-1, workers=workers))  # (B, frames, 257)
    return np.log(magnitude @ _MEL + LOG_OFFSET)


def patches(mel: np.ndarray) -> np.ndarray:
    """(B, frames, 64) -> (B, P, 96, 64)."""
    return sliding_window_view(mel, PATCH, axis=1)[:, ::PATCH_HOP].transpose(0, 1, 3, 2)


class YamnetCore:
    """Windows (B, T) at 16 kHz -> max-pooled 1024-d embeddings; `scores` also gives the class probabilities.

    `batch_patches` bounds one onnxruntime call (a 10 s window is 20 patches); `threads` 0 uses every core.
    """

    sample_rate = SAMPLE_RATE
    dim = EMBED_DIM
    crops_padding = True  # patches past `lengths` are skipped, so trailing zeros change nothing

    def __init__(self, model: str | None = None, batch_patches: int = 256, threads: int = 0) -> None:
        if batch_patches <= 0:
            raise ModelLoadError(f"yamnet batch_patches must be positive, got {batch_patches}")
        self.batch_patches, self.threads = batch_patches, threads
        self.session = onnx_session(Path(model) if model else MODEL, threads)
        self.class_names = load_class_names()

    def __call__(self, waves: np.ndarray, lengths: np.ndarray | None = None) -> np.ndarray:
        return self.scores(waves, lengths)[1]

    def scores(self, waves: np.ndarray, lengths: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(B, T) -> class probabilities (B, 521) and embeddings (B, 1024), each the max over the patches
        that hold real audio."""
        waves = np.asarray(waves, dtype=np.float32)
        if waves.ndim != 2:
            raise InvalidInputError(f"waveforms must be (batch, samples), got shape {waves.shape}")
        p = patches(log_mel(waves))  # (B, P, 96, 64)
        b, n = p.shape[:2]
        real = np.full(b, waves.shape[1]) if lengths is None else np.minimum(lengths, waves.shape[1])
        valid = np.arange(n)[None, :] < patch_count(real)[:, None]  # (B, P)
        emb, logits = self.run(p.reshape(b * n, PATCH, N_MELS)[valid.reshape(-1)])
        probs = 0.5 * (1.0 + np.tanh(0.5 * logits))  # the sigmoid, without overflow warnings
        return masked_max(probs, valid), masked_max(emb, valid)

    def run(self, mel_patches: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Log-mel patches (M, 96, 64) -> embeddings (M, 1024) and logits (M, 521)."""
        x = np.ascontiguousarray(mel_patches, dtype=np.float32)[:, None]  # (M, 1, 96, 64)
        embs, logits = [], []
        for i in range(0, len(x), self.batch_patches):
            e, lg = self.session.run(None, {"log_mel": x[i : i + self.batch_patches]})
            embs.append(e)
            logits.append(lg)
        return np.concatenate(embs), np.concatenate(logits)


def masked_max(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """values (M, D) of the M true entries of valid (B, P) -> max over each row's entries (B, D)."""
    b, p = valid.shape
    full = np.full((b * p, values.shape[1]), -np.inf, dtype=np.float32)
    full[valid.reshape(-1)] = values
    return full.reshape(b, p, -1).max(axis=1)


def onnx_session(path: Path, threads: int) -> object:
    import onnxruntime as ort

    if not path.is_file():
        raise ModelLoadError(f"YAMNet model not found: {path} (re-create it with scripts/vendor_yamnet.py)")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    # Spinning pool threads burn the cores that decode workers and the text tower need between calls.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    # Exact int8 products everywhere: x86 CPUs without VNNI otherwise take a u8s8 kernel whose 16-bit sums
    # saturate, and on them (AVX2 EPYC) YAMNet's embeddings fell to cosine 0.60 of the exact ones.
    opts.add_session_config_entry("session.x64quantprecision", "1")
    # The CPU provider also on CUDA hosts: onnxruntime's CUDA provider has no int8 convolution and would round
    # differently (float convolutions between the quantisers), so a GPU host's vectors would drift from a CPU index.
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
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


@audio_core("yamnet")
def build_yamnet(**options: object) -> YamnetCore:
    return YamnetCore(**options)  # type: ignore[arg-type]
