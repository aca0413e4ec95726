"""The text side (tower + projection + normalisation) in onnxruntime, tokenised by `tokenizers`: no torch.

An export directory (audiosearch.models.onnx.export.export_text_onnx) holds text.onnx, tokenizer.json (the text tower's
own fast tokenizer, saved whole) and export.json (fingerprint, dimension, token limit, caption rule). Exports
are made once per model and kept in a cache folder ($AUDIOSEARCH_ONNX_CACHE, default
~/.cache/audiosearch/onnx/<fingerprint>/), so the service needs no manual export step; `--onnx DIR` /
$AUDIOSEARCH_ONNX_DIR name one explicitly.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from audiosearch.core.errors import ModelLoadError
from audiosearch.models.text import check_texts, normalize_caption

log = logging.getLogger(__name__)
GRAPH, META, TOKENIZER = "text.onnx", "export.json", "tokenizer.json"
CACHE_ENV = "AUDIOSEARCH_ONNX_CACHE"


def cache_root() -> Path:
    """Where text exports are kept, one folder per model fingerprint."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "audiosearch" / "onnx"


def read_meta(directory: Path) -> dict[str, Any]:
    try:
        return json.loads((directory / META).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ModelLoadError(f"{directory}: not an ONNX text export ({err})") from None


class OnnxTextSide:
    """Captions or queries -> (B, dim) unit vectors, exactly as the torch text side computes them."""

    def __init__(self, directory: str | Path, fingerprint: str, threads: int = 0) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        directory = Path(directory)
        meta = read_meta(directory)
        if meta.get("fingerprint") != fingerprint:
            raise ModelLoadError(
                f"{directory}: exported from model {meta.get('fingerprint')}, not {fingerprint}; export again"
            )
        if not (directory / TOKENIZER).is_file():
            raise ModelLoadError(f"{directory}: an export of an earlier version (no {TOKENIZER}); export again")
        self.dim, self.directory = int(meta["dim"]), directory
        self.rule: str | None = meta.get("normalize_text")
        self.tokenizer = Tokenizer.from_file(str(directory / TOKENIZER))
        self.tokenizer.enable_truncation(int(meta["max_tokens"]))
        self.tokenizer.enable_padding(pad_id=int(meta["pad_id"]), pad_token=meta["pad_token"])
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        # Idle pool threads would spin for the next call, taking the CPU from request handling and search.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # The CPU provider only: this export serves the CPU device (on a CUDA device the torch tower runs the text).
        self.session = ort.InferenceSession(str(directory / GRAPH), opts, providers=["CPUExecutionProvider"])

    def tokenize(self, texts: list[str]) -> dict[str, np.ndarray]:
        if self.rule:
            texts = [normalize_caption(t, self.rule) for t in texts]
        encoded = self.tokenizer.encode_batch(texts)
        return {
            "input_ids": np.array([e.ids for e in encoded], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encoded], dtype=np.int64),
        }

    def encode(self, texts: list[str]) -> np.ndarray:
        feeds = self.tokenize(check_texts(texts))
        return self.session.run(["query_vector"], feeds)[0].astype(np.float32, copy=False)


def find_export(fingerprint: str, directory: str | Path | None = None) -> Path | None:
    """`directory` if given (it must be an export of this model), else the cached export, if any."""
    if directory is not None:
        return Path(directory)
    cached = cache_root() / fingerprint
    return cached if (cached / META).is_file() else None


def cached_export(fingerprint: str, make: Callable[[Path], None]) -> Path:
    """The cache's export of `fingerprint`, made by `make(folder)` if there is none yet: once, under a file lock,
    so processes starting together wait for the first one's export instead of each making their own."""
    out = cache_root() / fingerprint
    if (out / META).is_file():
        return out
    lock = out.with_name(f".{out.name}.lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        if not (out / META).is_file():  # another process may have made it while we waited
            make(out)
    return out
