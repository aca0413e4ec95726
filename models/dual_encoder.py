"""Audio tower + text tower, each projected into one shared, L2-normalised space (torch; trains).

`embed_audio` / `embed_tokens` are the training-time forwards (tensors in, tensors out, with gradients).
`encode_audio` / `encode_text` are the inference API every backend shares (audiosearch.models.encoder.Encoder): numpy
in, numpy out, torch stays inside.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from audiosearch.core.errors import ModelLoadError
from audiosearch.models import provenance
from audiosearch.models.batching import Waveforms, chunks, model_batches
from audiosearch.models.config import ModelConfig
from audiosearch.models.losses import nt_xent
from audiosearch.models.text import check_texts
from audiosearch.models.towers.modules.base import AudioTower, TextTower, build_audio_tower, build_text_tower


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


class AudioOnnxSide(Protocol):
    """A faster inference path for the audio side (models.onnx.audio), same inputs and outputs as embed_audio."""

    def accepts(self, width: int) -> bool: ...

    def embed(self, waveforms: np.ndarray, lengths: np.ndarray) -> np.ndarray: ...


class TextOnnxSide(Protocol):
    """A faster inference path for the text side (audiosearch.models.onnx.text), same output as encode_text."""

    def encode(self, texts: list[str]) -> np.ndarray: ...


class DualEncoder(nn.Module):
    # Exports of this model's sides (models.onnx.audio / models.onnx.text), used on the CPU outside training.
    audio_onnx: AudioOnnxSide | None = None
    text_onnx: TextOnnxSide | None = None
    fingerprint: str = ""
    bundled_tokenizer: str | None = None  # a tokenizer folder of its model directory (audiosearch.models.checkpoint)

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        config.validate()
        self.config = config
        self.audio_tower: AudioTower = build_audio_tower(config.audio.kind, config.audio.options)
        self.text_tower: TextTower = build_text_tower(config.text.kind, config.text.options)
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
        # where each part's weights come from (audiosearch.models.provenance); load_model and training update it
        self.provenance = provenance.derived(config, None)
        self.eval()

    def train(self, mode: bool = True) -> DualEncoder:
        if mode:  # an export holds the weights it was made from; training changes them
            self.audio_onnx = self.text_onnx = None
        return super().train(mode)

    @property
    def sample_rate(self) -> int:
        return self.audio_tower.sample_rate

    @property
    def dim(self) -> int:
        return self.config.embed_dim

    @property
    def device(self) -> torch.device:
        return self.log_temperature.device

    # -- training-time forward (with gradients) -------------------------------------------------
    def embed_audio(self, waveforms: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T) at self.sample_rate -> (B, embed_dim), unit norm."""
        return F.normalize(self.project_audio(waveforms, lengths), dim=-1)

    def project_audio(self, waveforms: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T) -> (B, embed_dim) before normalisation: what a clip's windows are averaged over
        (audiosearch.models.aggregate), the reference's mean of features then projection (the projection is affine)."""
        return self.audio_proj(self.audio_tower(waveforms, lengths))

    def embed_tokens(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.text_proj(self.text_tower(input_ids, attention_mask)), dim=-1)

    def loss(self, audio: torch.Tensor, text: torch.Tensor, audio_ids: torch.Tensor | None = None) -> torch.Tensor:
        return nt_xent(audio, text, self.log_temperature, audio_ids)

    # -- inference API (numpy at the boundary) -------------------------------------------------
    def encode_audio(
        self,
        waveforms: Waveforms,
        sample_rate: int,
        lengths: Sequence[int] | np.ndarray | None = None,
        batch_size: int = 32,
        normalize: bool = True,
    ) -> np.ndarray:
        """Waveforms (B, T) or a list of 1-D arrays at `sample_rate` -> (B, embed_dim) float32 unit vectors
        (`normalize=False`: the projected vectors before normalisation, for audiosearch.models.aggregate)."""
        crop = self.audio_tower.crops_padding
        out = []
        forward = self.embed_audio if normalize else self.project_audio
        with self._inference():
            for waves, lens in model_batches(waveforms, sample_rate, lengths, self.sample_rate, batch_size, crop):
                if normalize and self._runtime_takes(waves.shape[1]):  # an export gives unit vectors only
                    out.append(self.audio_onnx.embed(waves, lens))  # type: ignore[union-attr]
                    continue
                x, n = torch.from_numpy(waves).to(self.device), torch.from_numpy(lens).to(self.device)
                out.append(forward(x, n).float().cpu().numpy())
        return np.concatenate(out).astype(np.float32, copy=False)

    def encode_text(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Captions or queries -> (B, embed_dim) float32 unit vectors."""
        texts = check_texts(texts)
        if self.text_onnx is not None and not self.training and self.device.type == "cpu":
            return np.concatenate([self.text_onnx.encode(texts[r]) for r in chunks(len(texts), batch_size)])
        out = []
        with self._inference():
            for rows in chunks(len(texts), batch_size):
                tok = self.text_tower.tokenize(texts[rows])
                tok = {k: v.to(self.device) for k, v in tok.items()}
                out.append(self.embed_tokens(**tok).float().cpu().numpy())
        return np.concatenate(out)

    def _runtime_takes(self, width: int) -> bool:
        rt = self.audio_onnx
        return rt is not None and not self.training and self.device.type == "cpu" and rt.accepts(width)

    @contextlib.contextmanager
    def _inference(self) -> Iterator[None]:
        if self.training:
            yield
            return
        amp = torch.autocast("cuda", dtype=torch.float16) if self.device.type == "cuda" else contextlib.nullcontext()
        with torch.inference_mode(), amp:
            yield
