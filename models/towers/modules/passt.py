"""PaSST-S audio tower via hear21passt: log-mel front end + patch transformer, 768-d CLS/dist mean."""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import os
import urllib.error
from pathlib import Path
from types import ModuleType

import torch

from audiosearch.core.errors import ModelLoadError
from audiosearch.models.frontend import PasstMel
from audiosearch.models.registry import audio_module
from audiosearch.models.towers.modules.base import AudioTower

log = logging.getLogger(__name__)

# arch -> patch stride the released checkpoint was trained with
ARCH_STRIDES = {
    "passt_s_p16_s16_128_ap468": 16,
    "passt_s_swa_p16_128_ap476": 10,
    "passt_s_kd_p16_128_ap486": 10,
}


class PasstTower(AudioTower):
    sample_rate = 32000

    def __init__(
        self,
        arch: str = "passt_s_p16_s16_128_ap468",
        checkpoint: str | None = None,
        pretrained: bool = False,
        input_tdim: int = 1000,
        s_patchout_t: int = 15,  # reference recipe (Primus et al. 2023): 15 time columns, 2 frequency rows
        s_patchout_f: int = 2,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
    ) -> None:
        super().__init__()
        if arch not in ARCH_STRIDES:
            raise ModelLoadError(f"unknown PaSST arch {arch!r}; known: {', '.join(ARCH_STRIDES)}")
        self.mel = PasstMel(sample_rate=self.sample_rate)
        self.net = _build_net(arch, input_tdim, s_patchout_t, s_patchout_f, embed_dim, depth, num_heads)
        self.dim = embed_dim
        if checkpoint:
            _load_checkpoint(self.net, Path(checkpoint))
        elif pretrained:
            _load_audioset(self.net, arch)

    @property
    def patchout(self) -> tuple[int, int]:
        """(time columns, frequency rows) of patches dropped per example in train mode."""
        return int(self.net.s_patchout_t), int(self.net.s_patchout_f)

    def set_patchout(self, time: int, frequency: int) -> None:
        """Structured patchout sizes for training (reference: time 15, frequency 2). hear21passt drops
        that many random patch columns / rows only while `self.training`; eval mode sees every patch."""
        grid_f, grid_t = self.net.patch_embed.grid_size
        if not (0 <= time < grid_t and 0 <= frequency < grid_f):
            raise ModelLoadError(
                f"patchout must leave patches: time in [0, {grid_t}), frequency in [0, {grid_f}); "
                f"got time {time}, frequency {frequency}"
            )
        self.net.s_patchout_t, self.net.s_patchout_f = int(time), int(frequency)

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        mel = self.mel(waveforms).unsqueeze(1)  # (B, 1, 128, frames)
        # PaSST applies structured patchout (and the mel front end its band jitter) only when training.
        _, features = self.net(mel)  # features: mean of CLS and distillation tokens, (B, 768)
        return features


@functools.cache
def _passt_module() -> ModuleType:
    from hear21passt.models import passt as passt_module

    # Its forward prints shapes while this global is set; a stdout swap per forward would race between threads.
    passt_module.first_RUN = False
    return passt_module


def _build_net(
    arch: str, input_tdim: int, patchout_t: int, patchout_f: int, embed_dim: int, depth: int, num_heads: int
) -> torch.nn.Module:
    stride = ARCH_STRIDES[arch]
    # hear21passt reads values (.item()) while building, which a meta default device (shape-only models) cannot give.
    with torch.device("cpu"):
        net = _passt_module().PaSST(
            img_size=(128, input_tdim),
            stride=(stride, stride),
            patch_size=16,
            in_chans=1,
            num_classes=527,
            embed_dim=embed_dim,
            depth=depth,
            num_heads=num_heads,
            distilled=True,
            s_patchout_t=patchout_t,
            s_patchout_f=patchout_f,
        )
    return net


def _load_checkpoint(net: torch.nn.Module, path: Path) -> None:
    if not path.is_file():
        raise ModelLoadError(f"PaSST checkpoint not found: {path}")
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    missing, unexpected = net.load_state_dict(state, strict=False)
    if missing:
        raise ModelLoadError(f"{path}: checkpoint lacks {len(missing)} PaSST weights, e.g. {missing[:3]}")
    if unexpected:
        log.warning("%s: ignored %d unexpected keys", path, len(unexpected))


def audioset_weights(arch: str) -> tuple[str, Path]:
    """hear21passt's download URL for `arch`'s AudioSet weights and where its loader caches them."""
    from hear21passt.models.passt import default_cfgs
    from timm.models._hub import get_cache_dir

    url = default_cfgs[arch]["url"]
    return url, Path(get_cache_dir()) / url.rsplit("/", 1)[-1]


def _load_audioset(net: torch.nn.Module, arch: str) -> None:
    """hear21passt's own pretrained loading: the cached file, else its download (when online)."""
    from hear21passt.models.helpers.vit_helpers import load_pretrained
    from hear21passt.models.passt import checkpoint_filter_fn, default_cfgs

    url, cached = audioset_weights(arch)
    fetch = f"fetch {url} to {cached} (hear21passt's cache) or give the audio tower that file as its checkpoint"
    if not cached.is_file() and os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0"):
        raise ModelLoadError(f"PaSST AudioSet weights {cached.name} are not cached and the hub is offline: {fetch}")
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            load_pretrained(
                net,
                default_cfg=default_cfgs[arch],
                num_classes=527,
                in_chans=1,
                filter_fn=checkpoint_filter_fn,
                strict=True,
            )
    except (OSError, urllib.error.URLError) as err:  # no network (URLError is an OSError), a partial file
        raise ModelLoadError(f"cannot get PaSST AudioSet weights {cached.name} ({err}): {fetch}") from None
    except RuntimeError as err:  # a tower of another size than the weights
        raise ModelLoadError(f"{cached.name} does not fit this PaSST tower: {str(err).splitlines()[0]}") from None


@audio_module("passt")
def build_passt(**options: object) -> PasstTower:
    return PasstTower(**options)  # type: ignore[arg-type]
