"""The reference systems' module trees and inference, rebuilt from the libraries they use (hear21passt,
transformers), independent of audiosearch's model code: what an imported checkpoint must reproduce.

Layout and forward follow CPJKU/dcase2025_task6_baseline d25_t6/retrieval_module.py + passt.py (forward_audio,
forward_text, CutInputIntoSegmentsWrapper) and OptimusPrimus/salsa experiments/ex_dcase24.py (project_audio.0,
sentence_embedding_model, project_sentence.0 and the four tensors its default forward does not use).
"""

from __future__ import annotations

import contextlib
import io
import string
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

SR = 32000
SEGMENT = 10 * SR


def passt(embed_dim: int, depth: int, heads: int) -> nn.Module:
    from hear21passt.models.passt import PaSST

    with contextlib.redirect_stdout(io.StringIO()), torch.device("cpu"):  # it reads values while building
        return PaSST(
            img_size=(128, 1000),
            stride=(16, 16),
            patch_size=16,
            in_chans=1,
            num_classes=527,
            embed_dim=embed_dim,
            depth=depth,
            num_heads=heads,
            distilled=True,
            s_patchout_t=15,
            s_patchout_f=2,
        )


def roberta(config: dict[str, Any]) -> nn.Module:
    from transformers import AutoConfig, RobertaModel

    cfg = AutoConfig.for_model(**{**config, "hidden_dropout_prob": 0.2, "attention_probs_dropout_prob": 0.2})
    return RobertaModel(cfg, add_pooling_layer=False)


class _Holder(nn.Module):
    def __init__(self, child: nn.Module) -> None:
        super().__init__()
        self.model = child


class Reference(nn.Module):
    """d25's AudioRetrievalModel (fmt "dcase2025") or salsa's (fmt "salsa"): same weights, their key names."""

    def __init__(self, fmt: str, passt_dims: tuple[int, int, int], text: dict[str, Any], dim: int) -> None:
        super().__init__()
        self.fmt = fmt
        net = passt(*passt_dims)
        self.audio_embedding_model = _Holder(_Holder(net))  # .model.model = PaSST, as in both repositories
        audio_proj, text_model = nn.Linear(passt_dims[0], dim), roberta(text)
        text_proj = nn.Linear(text["hidden_size"], dim)
        if fmt == "dcase2025":
            self.audio_projection, self.text_embedding_model, self.text_projection = audio_proj, text_model, text_proj
        else:
            self.project_audio, self.sentence_embedding_model = nn.Sequential(audio_proj), text_model
            self.project_sentence = nn.Sequential(text_proj)
            self.timing_tau = nn.Parameter(torch.zeros(1) + 0.05, requires_grad=False)
            self.audio_token = nn.Parameter(torch.randn(1, 1, passt_dims[0]) * 0.04)
            self.posencode = nn.Module()
            self.posencode.w = nn.Parameter(torch.ones(1))
            self.posencode.pe = nn.Parameter(torch.randn(1, 192, passt_dims[0]), requires_grad=False)
        self.tau = nn.Parameter(torch.zeros(1) + 0.05, requires_grad=False)
        with torch.no_grad():  # random, away from the default init (zero biases, unit norms): every tensor counts
            for p in self.parameters():
                p.add_(torch.randn_like(p) * 0.02)
            self.tau.fill_(0.05)
        self.eval()

    @property
    def audio_proj(self) -> nn.Module:
        return self.audio_projection if self.fmt == "dcase2025" else self.project_audio[0]

    @property
    def text_model(self) -> nn.Module:
        return self.text_embedding_model if self.fmt == "dcase2025" else self.sentence_embedding_model

    @property
    def text_proj(self) -> nn.Module:
        return self.text_projection if self.fmt == "dcase2025" else self.project_sentence[0]

    def state_dict_as_published(self, compiled: bool = False) -> dict[str, torch.Tensor]:
        """The state dict, with torch.compile's `_orig_mod.` where d25's --compile puts it."""
        out = {}
        for k, v in self.state_dict().items():
            if compiled:
                k = k.replace("audio_embedding_model.model.model.", "audio_embedding_model.model.model._orig_mod.")
                k = k.replace("text_embedding_model.", "text_embedding_model._orig_mod.")
            out[k] = v
        return out

    @torch.no_grad()
    def embed_clip(self, wave: np.ndarray) -> np.ndarray:
        """d25 forward_audio for one mono 32 kHz clip up to 30 s: pad to 30 s, three 10 s segments, PaSST,
        aggregate by duration (1, 2 or 3 segments), project, normalise."""
        from hear21passt.models.preprocess import AugmentMelSTFT

        mel = AugmentMelSTFT(
            n_mels=128,
            sr=SR,
            win_length=800,
            hopsize=320,
            n_fft=1024,
            freqm=0,
            timem=0,
            htk=False,
            fmin=0.0,
            fmax=None,
            norm=1,
            fmin_aug_range=10,
            fmax_aug_range=2000,
        ).eval()
        duration = len(wave) / SR
        x = torch.zeros(3 * SEGMENT)
        x[: len(wave)] = torch.from_numpy(wave[: 3 * SEGMENT])
        segments = x.reshape(3, SEGMENT)
        with contextlib.redirect_stdout(io.StringIO()):
            features = self.audio_embedding_model.model.model(mel(segments)[:, None])[-1]  # (3, 768)
        used = 1 if duration <= 10 else 2 if duration <= 20 else 3
        clip = self.audio_proj(features[:used].mean(0, keepdim=True))
        return nn.functional.normalize(clip, p=2, dim=-1)[0].numpy()

    @torch.no_grad()
    def embed_captions(self, captions: list[str], tokenizer: Any) -> np.ndarray:
        """d25 forward_text: lower case, string.punctuation deleted, padded to 32 tokens, first token."""
        texts = [c.lower().translate(str.maketrans("", "", string.punctuation)) for c in captions]
        tok = tokenizer(
            texts, add_special_tokens=True, padding="max_length", return_tensors="pt", max_length=32, truncation=True
        )
        hidden = self.text_model(input_ids=tok["input_ids"], attention_mask=tok["attention_mask"])[0]
        return nn.functional.normalize(self.text_proj(hidden[:, 0, :]), p=2, dim=-1).numpy()


def lightning_checkpoint(state: dict[str, torch.Tensor], path: Path, hparams: Any = None) -> Path:
    """A Lightning 2.x checkpoint around `state`, with the training entries the published files carry."""
    moments = {
        i: {"exp_avg": torch.zeros(2), "exp_avg_sq": torch.zeros(2), "step": torch.tensor(3.0)} for i in range(2)
    }
    torch.save(
        {
            "epoch": 7,
            "global_step": 1234,
            "pytorch-lightning_version": "2.5.0.post0",
            "state_dict": state,
            "loops": {"fit_loop": {}},
            "callbacks": {"ModelCheckpoint": {}},
            "optimizer_states": [{"state": moments, "param_groups": [{"lr": 2e-5}]}],
            "lr_schedulers": [],
            "MixedPrecision": {"scale": 2048.0},
            "hyper_parameters": hparams or {"roberta_base": False},
            "hparams_name": "kwargs",
        },
        path,
    )
    return path
