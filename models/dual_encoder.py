"""Audio tower + text tower, each projected into one shared, L2-normalised space."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.audio import resample
from models.config import ModelConfig
from models.encoders.base import AUDIO_TOWERS, TEXT_TOWERS, AudioTower, TextTower, build_tower
from models.errors import InvalidInputError, ModelLoadError
from models.losses import nt_xent

MAX_AUDIO_SECONDS = 600.0  # one row of encode_audio; longer audio goes through cut_windows first
MAX_TEXT_CHARS = 2000


def projection(kind: str, dim_in: int, dim_out: int) -> nn.Module:
    if kind == "mlp":
        return nn.Sequential(nn.Linear(dim_in, dim_out), nn.ReLU(), nn.Linear(dim_out, dim_out))
    if kind == "tied":
        # Orthonormal columns keep inner products, so towers that already share a space (the YAMNet
        # label bridge and MiniLM) score zero-shot. A padded identity rather than a random orthogonal
        # matrix: every process must build the same map, or an index would not match later queries.
        proj = nn.Linear(dim_in, dim_out, bias=False)
        with torch.no_grad():
            proj.weight.copy_(torch.eye(dim_out, dim_in))
        return proj
    return nn.Linear(dim_in, dim_out)


class _Tied(nn.Module):
    """The audio side's projection, applied to text. It owns no parameters, so a checkpoint stores
    the shared weight once (safetensors refuses two names for one tensor)."""

    def __init__(self, shared: nn.Module) -> None:
        super().__init__()
        self._shared = (shared,)  # a tuple keeps it out of this module's parameters and state_dict

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._shared[0](x)


class AudioRuntime(Protocol):
    """A faster inference path for the audio side (models.onnx_audio), same inputs and outputs as embed_audio."""

    def accepts(self, width: int) -> bool: ...

    def embed(self, waveforms: np.ndarray, lengths: np.ndarray) -> np.ndarray: ...


class DualEncoder(nn.Module):
    # Set by models.onnx_audio.attach_audio_onnx; encode_audio uses it on the CPU, outside training.
    audio_runtime: AudioRuntime | None = None

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        config.validate()
        self.config = config
        self.audio_tower: AudioTower = build_tower(AUDIO_TOWERS, config.audio.kind, config.audio.options)
        self.text_tower: TextTower = build_tower(TEXT_TOWERS, config.text.kind, config.text.options)
        self.audio_proj = projection(config.projection, self.audio_tower.dim, config.embed_dim)
        if config.projection == "tied":
            if self.audio_tower.dim != self.text_tower.dim:
                raise ModelLoadError(
                    f"projection 'tied' needs towers of one width, got audio {self.audio_tower.dim} "
                    f"and text {self.text_tower.dim}"
                )
            self.text_proj: nn.Module = _Tied(self.audio_proj)
        else:
            self.text_proj = projection(config.projection, self.text_tower.dim, config.embed_dim)
        log_t = torch.tensor(math.log(config.temperature_init))
        self.log_temperature = nn.Parameter(log_t, requires_grad=config.learn_temperature)
        for side in config.frozen_towers:
            getattr(self, f"{side}_tower").requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> DualEncoder:
        if mode:
            self.audio_runtime = None  # an export holds the weights it was made from; training changes them
        return super().train(mode)

    @property
    def sample_rate(self) -> int:
        return self.audio_tower.sample_rate

    @property
    def device(self) -> torch.device:
        return self.log_temperature.device

    # -- training-time forward (with gradients) -------------------------------------------------
    def embed_audio(self, waveforms: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T) at self.sample_rate -> (B, embed_dim), unit norm."""
        return F.normalize(self.audio_proj(self.audio_tower(waveforms, lengths)), dim=-1)

    def embed_tokens(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.text_proj(self.text_tower(input_ids, attention_mask)), dim=-1)

    def loss(self, audio: torch.Tensor, text: torch.Tensor, audio_ids: torch.Tensor | None = None) -> torch.Tensor:
        return nt_xent(audio, text, self.log_temperature, audio_ids)

    # -- inference API ------------------------------------------------------------------------
    def encode_audio(
        self,
        waveforms: np.ndarray | torch.Tensor | Sequence[np.ndarray],
        sample_rate: int,
        lengths: Sequence[int] | np.ndarray | None = None,
        batch_size: int = 32,
    ) -> torch.Tensor:
        """Waveforms (B, T) or a list of 1-D arrays at `sample_rate` -> (B, embed_dim) on the CPU."""
        batch, lens = _audio_batch(waveforms, sample_rate, lengths)
        if sample_rate != self.sample_rate:
            batch, lens = _resample_batch(batch, lens, sample_rate, self.sample_rate)
        out = []
        with self._inference():
            for rows in _chunks(len(batch), batch_size):
                width = int(lens[rows].max()) if self.audio_tower.crops_padding else batch.shape[1]
                if self._runtime_takes(width):
                    out.append(torch.from_numpy(self.audio_runtime.embed(batch[rows, :width], lens[rows])))
                    continue
                x = torch.from_numpy(batch[rows, :width]).to(self.device)
                n = torch.from_numpy(lens[rows]).to(self.device)
                out.append(self.embed_audio(x, n).float().cpu())
        return torch.cat(out)

    def encode_text(self, texts: Sequence[str], batch_size: int = 64) -> torch.Tensor:
        """Captions or queries -> (B, embed_dim) on the CPU."""
        texts = _check_texts(texts)
        out = []
        with self._inference():
            for rows in _chunks(len(texts), batch_size):
                tok = self.text_tower.tokenize(list(texts[rows]))
                tok = {k: v.to(self.device) for k, v in tok.items()}
                out.append(self.embed_tokens(**tok).float().cpu())
        return torch.cat(out)

    def _runtime_takes(self, width: int) -> bool:
        rt = self.audio_runtime
        return rt is not None and not self.training and self.device.type == "cpu" and rt.accepts(width)

    @contextlib.contextmanager
    def _inference(self) -> Iterator[None]:
        if self.training:
            yield
            return
        amp = torch.autocast("cuda", dtype=torch.float16) if self.device.type == "cuda" else contextlib.nullcontext()
        with torch.inference_mode(), amp:
            yield


def _chunks(n: int, size: int) -> Iterator[slice]:
    for i in range(0, n, max(1, size)):
        yield slice(i, min(n, i + size))


def _check_texts(texts: Sequence[str]) -> np.ndarray:
    if isinstance(texts, str) or not isinstance(texts, Sequence) or len(texts) == 0:
        raise InvalidInputError("texts must be a non-empty list of strings")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise InvalidInputError(f"text {i} is {type(t).__name__}, not a string")
        if not t.strip():
            raise InvalidInputError(f"text {i} is empty")
        if len(t) > MAX_TEXT_CHARS:
            raise InvalidInputError(f"text {i} has {len(t)} characters; the limit is {MAX_TEXT_CHARS}")
    return np.asarray(list(texts), dtype=object)


def _audio_batch(
    waveforms: np.ndarray | torch.Tensor | Sequence[np.ndarray], sample_rate: int, lengths: object
) -> tuple[np.ndarray, np.ndarray]:
    """Validate and stack into (B, T) float32 plus real lengths; ragged lists are zero-padded. A (B, T)
    float32 array is used as it is: the indexer's batches are ~100 MB, and a copy of them costs a
    GPU-sized forward's worth of main-thread time."""
    if not isinstance(sample_rate, int | np.integer) or sample_rate <= 0:
        raise InvalidInputError(f"sample_rate must be a positive integer, got {sample_rate!r}")
    if isinstance(waveforms, torch.Tensor):
        waveforms = waveforms.detach().cpu().numpy()
    if isinstance(waveforms, np.ndarray):
        if waveforms.ndim == 1:
            raise InvalidInputError("waveforms must be (batch, samples); wrap a single clip as wave[None]")
        if waveforms.ndim != 2:
            raise InvalidInputError(f"waveforms must be (batch, samples), got shape {waveforms.shape}")
        if len(waveforms) == 0:
            raise InvalidInputError("no waveforms given")
        batch = np.ascontiguousarray(waveforms, dtype=np.float32)
        lens = np.full(len(batch), batch.shape[1], dtype=np.int64)
        if lengths is not None:
            lens = np.minimum(np.asarray(lengths, dtype=np.int64), lens)
        _check_rows(batch, lens, sample_rate)
        return batch, lens
    rows = [np.asarray(w) for w in waveforms]
    if not rows:
        raise InvalidInputError("no waveforms given")
    lens = np.array([len(r) if r.ndim == 1 else -1 for r in rows], dtype=np.int64)
    if (lens < 0).any():
        raise InvalidInputError("each waveform must be 1-D (mono samples)")
    if lengths is not None:
        lens = np.minimum(np.asarray(lengths, dtype=np.int64), lens)
    _check_rows(rows, lens, sample_rate)
    batch = np.zeros((len(rows), max(max(len(r) for r in rows), 1)), dtype=np.float32)
    for i, r in enumerate(rows):
        batch[i, : len(r)] = r
    return batch, lens


def _check_rows(rows: np.ndarray | list[np.ndarray], lens: np.ndarray, sample_rate: int) -> None:
    for i, n in enumerate(lens):
        if n == 0:
            raise InvalidInputError(f"waveform {i} is empty")
        if n / sample_rate > MAX_AUDIO_SECONDS:
            raise InvalidInputError(
                f"waveform {i} is {n / sample_rate:.0f} s long; cut it into windows (models.cut_windows) first"
            )
    finite = np.isfinite(rows).all(axis=1) if isinstance(rows, np.ndarray) else [np.isfinite(r).all() for r in rows]
    for i, ok in enumerate(finite):
        if not ok:
            raise InvalidInputError(f"waveform {i} contains NaN or infinite samples")


def _resample_batch(batch: np.ndarray, lens: np.ndarray, sr: int, target: int) -> tuple[np.ndarray, np.ndarray]:
    rows = [resample(batch[i, : lens[i]], sr, target) for i in range(len(batch))]
    new_lens = np.array([len(r) for r in rows], dtype=np.int64)
    width = int(round(batch.shape[1] * target / sr))
    out = np.zeros((len(rows), max(width, int(new_lens.max()))), dtype=np.float32)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out, new_lens
