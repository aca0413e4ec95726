"""aiSFX sound-effects CNN (Ma and Lerch, ISMIR 2022; CC BY 4.0) as an audio tower: 512-d per window.

The network and its front end are re-implemented here in torch so that windows batch on any device;
weights come from models/assets/aisfx (converted from the aisfx 0.1.2 wheel, see its LICENSE).
Front end as in aisfx's librosa path: 44.1 kHz, peak-normalised, power mel (96 HTK bins, L1-normed
filters, n_fft 2048, hop 1024), log10(1e4 * mel + 1), min-max scaled; then blocks of 100 frames
(~2.3 s) with a 50-frame hop, laid out (frames, mel) as the network expects.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from audiosearch.core.errors import ModelLoadError
from audiosearch.models.registry import audio_module
from audiosearch.models.towers.modules.base import AudioTower

ASSET = Path(__file__).resolve().parents[2] / "assets" / "aisfx" / "embedding_net.safetensors"
SPEC_MAX = 9.457798957824707  # aisfx's 'original' normalisation constant
BLOCK, BLOCK_HOP = 100, 50
HOP = 1024  # STFT hop in samples


class _ConvBlock(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn1, self.bn2 = nn.BatchNorm2d(cout), nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor, pool: tuple[int, int]) -> torch.Tensor:
        x = F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))
        return F.max_pool2d(x, kernel_size=pool)


class _EmbeddingNet(nn.Module):
    """(N, 100 frames, 96 mel) -> (N, 512): four conv blocks, mean over mel, max over time."""

    def __init__(self, width: int = 64) -> None:
        super().__init__()
        w = [1, width, width * 2, width * 4, width * 8]
        for i in range(4):
            setattr(self, f"conv_block{i + 1}", _ConvBlock(w[i], w[i + 1]))

    def forward(self, blocks: torch.Tensor) -> torch.Tensor:
        x = blocks.unsqueeze(1)
        for i, pool in enumerate([(2, 2), (2, 2), (2, 2), (1, 1)]):
            x = getattr(self, f"conv_block{i + 1}")(x, pool)
        return x.mean(dim=3).amax(dim=2)


class AisfxTower(AudioTower):
    sample_rate = 44100
    dim = 512
    crops_padding = True

    def __init__(self, weights: str | None = None, pooling: str = "max") -> None:
        super().__init__()
        if pooling not in ("max", "mean"):
            raise ModelLoadError(f"aisfx pooling must be 'max' or 'mean', got {pooling!r}")
        self.pooling = pooling
        self.net = _EmbeddingNet()
        path = Path(weights) if weights else ASSET
        if not path.is_file():
            raise ModelLoadError(f"aisfx weights not found: {path}")
        self.net.load_state_dict(load_file(str(path)))
        self.net.requires_grad_(False)  # a frozen feature extractor; only projections train
        self.register_buffer("window", torch.hann_window(2048), persistent=False)
        self.register_buffer("mel_fb", _mel_filters(), persistent=False)

    def train(self, mode: bool = True) -> AisfxTower:
        super().train(mode)
        self.net.eval()  # frozen BatchNorm statistics, always
        return self

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        spec = self.log_mel(waveforms)  # (B, frames, 96)
        blocks, owner, valid = _blocks(spec, lengths)
        emb = self.net(blocks)  # (N, 512)
        return _pool(emb, owner, valid, spec.shape[0], self.pooling)

    def log_mel(self, waveforms: torch.Tensor) -> torch.Tensor:
        peak = waveforms.abs().amax(dim=1, keepdim=True)
        x = waveforms / torch.where(peak > 0, peak, torch.ones_like(peak))
        spec = torch.stft(
            x, 2048, hop_length=1024, window=self.window, center=True, pad_mode="constant", return_complex=True
        )
        power = spec.real**2 + spec.imag**2  # (B, 1025, frames)
        mel = torch.matmul(self.mel_fb, power)  # (B, 96, frames)
        return (torch.log10(mel * 10000.0 + 1.0) / SPEC_MAX).transpose(1, 2)


def _mel_filters() -> torch.Tensor:
    import librosa

    fb = librosa.filters.mel(sr=44100, n_fft=2048, n_mels=96, fmin=0.0, fmax=22050.0, htk=True, norm=1.0)
    return torch.from_numpy(fb).float()


def _blocks(spec: torch.Tensor, lengths: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Cut (B, frames, 96) into 100-frame blocks, keeping those that lie wholly in real audio.

    That is aisfx's own rule (drop_partial_block), except that a clip shorter than one block keeps
    its first, padded block. It makes a clip's vector independent of how much padding its batch has.
    """
    b, frames, _ = spec.shape
    if frames < BLOCK:
        spec = F.pad(spec, (0, 0, 0, BLOCK - frames))
    blocks = spec.unfold(1, BLOCK, BLOCK_HOP).transpose(2, 3)  # (B, n, 100, 96)
    n = blocks.shape[1]
    starts = torch.arange(n, device=spec.device) * BLOCK_HOP
    if lengths is None:
        lengths = torch.full((b,), (frames - 1) * HOP, device=spec.device)
    real_frames = torch.div(lengths.to(spec.device), HOP, rounding_mode="floor") + 1
    valid = (starts[None, :] + BLOCK <= real_frames[:, None]) | (starts[None, :] == 0)
    owner = torch.arange(b, device=spec.device).repeat_interleave(n)
    return blocks.reshape(b * n, BLOCK, -1), owner, valid.reshape(-1)


def _pool(emb: torch.Tensor, owner: torch.Tensor, valid: torch.Tensor, b: int, how: str) -> torch.Tensor:
    emb = emb.view(b, -1, emb.shape[-1])
    mask = valid.view(b, -1, 1)
    if how == "max":
        return emb.masked_fill(~mask, float("-inf")).amax(dim=1)
    return (emb * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)


@audio_module("aisfx")
def build_aisfx(**options: object) -> AisfxTower:
    return AisfxTower(**options)  # type: ignore[arg-type]
