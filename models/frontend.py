"""PaSST's log-mel front end in plain torch (same numbers as hear21passt's AugmentMelSTFT in eval mode)."""

from __future__ import annotations

import math

import torch
from torch import nn


def kaldi_mel_banks(n_mels: int, n_fft: int, sample_rate: int, fmin: float, fmax: float) -> torch.Tensor:
    """Kaldi-style triangular filters on the 1127*ln(1+f/700) mel scale: (n_mels, n_fft // 2 + 1).

    Mirrors torchaudio.compliance.kaldi.get_mel_banks (float32 arithmetic, no VTLN) plus the zero
    column for the Nyquist bin that PaSST appends, so values match the reference bit for bit.
    """

    def mel(f: torch.Tensor | float) -> torch.Tensor | float:
        if isinstance(f, torch.Tensor):
            return 1127.0 * (1.0 + f / 700.0).log()
        return 1127.0 * math.log(1.0 + f / 700.0)

    n_bins = n_fft // 2
    mel_low, mel_high = mel(fmin), mel(fmax)
    delta = (mel_high - mel_low) / (n_mels + 1)
    b = torch.arange(n_mels).unsqueeze(1)
    left = mel_low + b * delta
    center = mel_low + (b + 1.0) * delta
    right = mel_low + (b + 2.0) * delta
    fft_mel = mel((sample_rate / n_fft) * torch.arange(float(n_bins))).unsqueeze(0)
    up = (fft_mel - left) / (center - left)
    down = (right - fft_mel) / (right - center)
    banks = torch.clamp(torch.min(up, down), min=0.0)  # (n_mels, n_bins)
    return nn.functional.pad(banks, (0, 1), value=0.0)


class PasstMel(nn.Module):
    """Waveforms (B, T) at 32 kHz -> normalised log-mel (B, n_mels, frames), 100 frames per second.

    In training the mel band edges jitter (fmin up by < fmin_aug_range Hz, fmax by +-fmax_aug_range/2)
    as in PaSST; in eval they are fixed, so embeddings are deterministic.
    """

    def __init__(
        self,
        sample_rate: int = 32000,
        n_mels: int = 128,
        n_fft: int = 1024,
        win_length: int = 800,
        hop_length: int = 320,
        fmin: float = 0.0,
        fmax: float | None = None,
        fmin_aug_range: int = 10,
        fmax_aug_range: int = 2000,
    ) -> None:
        super().__init__()
        self.sample_rate, self.n_mels, self.n_fft = sample_rate, n_mels, n_fft
        self.win_length, self.hop_length = win_length, hop_length
        self.fmin = fmin
        self.fmax = fmax if fmax is not None else sample_rate // 2 - fmax_aug_range // 2
        self.fmin_aug_range, self.fmax_aug_range = fmin_aug_range, fmax_aug_range
        # Non-persistent: derived from the config, so never stored in checkpoints.
        self.register_buffer("window", torch.hann_window(win_length, periodic=False), persistent=False)
        self.register_buffer("preemphasis", torch.tensor([[[-0.97, 1.0]]]), persistent=False)
        self.register_buffer("mel_eval", self._banks(self.fmin, self.fmax), persistent=False)

    def _banks(self, fmin: float, fmax: float) -> torch.Tensor:
        return kaldi_mel_banks(self.n_mels, self.n_fft, self.sample_rate, fmin, fmax)

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        # fp32 whatever the caller's autocast: in fp16 the power spectrum and the mel sums of loud input pass
        # 65504 (a full-scale 8 kHz sine reaches 84,000) and become inf, and quiet bins fall below the 1e-5 log
        # offset's precision. The reference keeps its mel matmul out of autocast for the same reason.
        with torch.autocast(waveforms.device.type, enabled=False):
            return self._log_mel(waveforms.float())

    def _log_mel(self, waveforms: torch.Tensor) -> torch.Tensor:
        x = nn.functional.conv1d(waveforms.unsqueeze(1), self.preemphasis).squeeze(1)  # (B, T-1)
        spec = torch.stft(
            x,
            self.n_fft,
            hop_length=self.hop_length,
            win_length=self.win_length,
            window=self.window,
            center=True,
            pad_mode="reflect",
            return_complex=True,
        )
        power = spec.real**2 + spec.imag**2  # (B, n_fft/2+1, frames)
        banks = self._training_banks(power.device) if self.training else self.mel_eval
        mel = torch.matmul(banks, power)  # (B, n_mels, frames)
        return (torch.log(mel + 1e-5) + 4.5) / 5.0

    def _training_banks(self, device: torch.device) -> torch.Tensor:
        fmin = self.fmin + torch.randint(self.fmin_aug_range, (1,)).item()
        fmax = self.fmax + self.fmax_aug_range // 2 - torch.randint(self.fmax_aug_range, (1,)).item()
        return self._banks(fmin, fmax).to(device)
