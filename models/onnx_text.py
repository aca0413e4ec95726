"""ONNX export of the text side (tower + projection + normalisation) and an onnxruntime runner for it."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from models.dual_encoder import DualEncoder, _check_texts
from models.errors import ModelLoadError

log = logging.getLogger(__name__)
GRAPH, META = "text.onnx", "export.json"


class _TextGraph(nn.Module):
    """Positional (ids, mask) in, unit vectors out; transformers 5 models want keyword arguments."""

    def __init__(self, model: DualEncoder) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model.embed_tokens(input_ids=input_ids, attention_mask=attention_mask)


def export_text_onnx(model: DualEncoder, out_dir: str | Path) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sample = model.text_tower.tokenize(["a dog barks in the distance", "rain"])
    graph = _TextGraph(model).eval()
    batch, seq = torch.export.Dim("batch", min=1, max=1024), torch.export.Dim("seq", min=2, max=512)
    with torch.no_grad():
        torch.onnx.export(
            graph,
            (sample["input_ids"], sample["attention_mask"]),
            str(out / GRAPH),
            input_names=["input_ids", "attention_mask"],
            output_names=["query_vector"],
            dynamic_shapes={"input_ids": {0: batch, 1: seq}, "attention_mask": {0: batch, 1: seq}},
            dynamo=True,
            external_data=False,
        )
    (out / META).write_text(json.dumps({"fingerprint": model.fingerprint, "dim": model.config.embed_dim}))
    return out


class OnnxTextEncoder:
    """Runs an exported text graph; tokenisation stays the torch tower's, so both paths see the same ids."""

    def __init__(self, directory: str | Path, model: DualEncoder, threads: int | None = None) -> None:
        import onnxruntime as ort

        directory = Path(directory)
        try:
            meta = json.loads((directory / META).read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ModelLoadError(f"{directory}: not an ONNX text export ({err})") from None
        if meta.get("fingerprint") != model.fingerprint:
            raise ModelLoadError(
                f"{directory}: exported from model {meta.get('fingerprint')}, not {model.fingerprint}; export again"
            )
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or (os.cpu_count() or 1)
        opts.inter_op_num_threads = 1
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in ort.get_available_providers()]
        self.session = ort.InferenceSession(str(directory / GRAPH), opts, providers=providers)
        self.tower = model.text_tower

    def encode_text(self, texts: list[str]) -> np.ndarray:
        texts = list(_check_texts(texts))
        tok = self.tower.tokenize(texts)
        feeds = {k: v.numpy().astype(np.int64) for k, v in tok.items()}
        return self.session.run(["query_vector"], feeds)[0].astype(np.float32)
