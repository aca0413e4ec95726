"""ONNX exports made with torch: the text side (used by default on CPUs, see audiosearch.models.onnx.text) and the audio
side of towers that gain from it (models.onnx.audio). Only this module needs torch to make an export; running
one needs onnxruntime and tokenizers alone.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import torch
from torch import nn

from audiosearch.core.atomic import atomic_directory
from audiosearch.core.errors import ModelLoadError
from audiosearch.models.dual_encoder import DualEncoder
from audiosearch.models.onnx.audio import GRAPH as AUDIO_GRAPH
from audiosearch.models.onnx.audio import MAX_SECONDS, MIN_SECONDS, WIRED_TOWERS
from audiosearch.models.onnx.audio import META as AUDIO_META
from audiosearch.models.onnx.text import GRAPH, META, TOKENIZER, cached_export

log = logging.getLogger(__name__)


class _TextGraph(nn.Module):
    """Positional (ids, mask) in, unit vectors out; transformers 5 models want keyword arguments."""

    def __init__(self, model: DualEncoder) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model.embed_tokens(input_ids=input_ids, attention_mask=attention_mask)


def export_text_onnx(model: DualEncoder, out_dir: str | Path) -> Path:
    """text.onnx + tokenizer.json + export.json in `out_dir` (written whole or not at all)."""
    tower = model.text_tower
    backend = getattr(tower.tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise ModelLoadError(f"the {model.config.text.kind} text tower has no fast tokenizer to export")
    sample = tower.tokenize(["a dog barks in the distance", "rain"])
    batch, seq = torch.export.Dim("batch", min=1, max=1024), torch.export.Dim("seq", min=2, max=512)
    with atomic_directory(out_dir) as tmp, torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's notes on dynamic-axis names and deprecations
        torch.onnx.export(
            _TextGraph(model.cpu()).eval(),
            (sample["input_ids"], sample["attention_mask"]),
            str(tmp / GRAPH),
            input_names=["input_ids", "attention_mask"],
            output_names=["query_vector"],
            dynamic_shapes={"input_ids": {0: batch, 1: seq}, "attention_mask": {0: batch, 1: seq}},
            dynamo=True,
            external_data=False,
            verbose=False,  # the exporter's progress lines would end up in the CLI's JSON output
        )
        backend.save(str(tmp / TOKENIZER))
        meta = {
            "fingerprint": model.fingerprint,
            "dim": model.config.embed_dim,
            "max_tokens": tower.max_tokens,
            "normalize_text": tower.normalize_text or None,
            "pad_id": tower.tokenizer.pad_token_id,
            "pad_token": tower.tokenizer.pad_token,
        }
        (tmp / META).write_text(json.dumps(meta, indent=2))
    return Path(out_dir)


def cached_text_export(name_or_path: str | Path, fingerprint: str) -> Path:
    """The cached export of a model's text side, made now (once, under a lock) if there is none yet."""

    def make(out: Path) -> None:
        from audiosearch.models.checkpoint import load_model

        log.info("exporting the text encoder of %s to ONNX, once, into %s", fingerprint, out)
        model = load_model(name_or_path)
        if model.fingerprint != fingerprint:
            raise ModelLoadError(f"{name_or_path} is now model {model.fingerprint}, not {fingerprint}")
        export_text_onnx(model, out)

    return cached_export(fingerprint, make)


class _AudioGraph(nn.Module):
    def __init__(self, model: DualEncoder) -> None:
        super().__init__()
        self.model = model

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.model.embed_audio(waveforms, lengths)


def check_audio_exportable(model: DualEncoder) -> None:
    kind = model.config.audio.kind
    if kind not in WIRED_TOWERS:
        raise ModelLoadError(
            f"the {kind!r} audio tower has no ONNX path: only {', '.join(sorted(WIRED_TOWERS))} gain from one "
            "(YAMNet already runs in onnxruntime; PaSST measured no faster at indexing batch sizes, "
            "see bench/onnx_audio.py)"
        )


def export_audio_onnx(model: DualEncoder, out_dir: str | Path, seconds: float = 10.0) -> Path:
    """Trace with a 2-row batch of `seconds` of noise; the exported graph accepts 1..1024 rows, 1..30 s."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sr = model.sample_rate
    n = int(seconds * sr)
    wave = torch.randn(2, n, generator=torch.Generator().manual_seed(0)) * 0.1
    lengths = torch.tensor([n, n // 2], dtype=torch.int64)
    batch = torch.export.Dim("batch", min=1, max=1024)
    # PaSST's patch grid branches on the input width, which torch.export cannot keep symbolic: its graph
    # is fixed at `seconds` (the length it was trained on). Towers that crop padding get any length.
    fixed = not model.audio_tower.crops_padding
    samples = None if fixed else torch.export.Dim("samples", min=int(MIN_SECONDS * sr), max=int(MAX_SECONDS * sr))
    with torch.no_grad():
        torch.onnx.export(
            _AudioGraph(model.cpu()).eval(),
            (wave, lengths),
            str(out / AUDIO_GRAPH),
            input_names=["waveforms", "lengths"],
            output_names=["audio_vector"],
            dynamic_shapes={"waveforms": {0: batch, 1: samples} if samples else {0: batch}, "lengths": {0: batch}},
            dynamo=True,
            external_data=False,
            verbose=False,
        )
    meta = {"fingerprint": model.fingerprint, "dim": model.config.embed_dim, "sample_rate": sr}
    (out / AUDIO_META).write_text(json.dumps({**meta, "samples": n if fixed else None}))
    return out
