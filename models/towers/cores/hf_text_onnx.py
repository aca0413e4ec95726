"""The transformers text towers (MiniLM, RoBERTa) in the slim runtime: their whole text side as an ONNX export.

The export (audiosearch.models.onnx.text) holds tower, projection and normalisation, so it answers for the model it was
made from. It is found in `--onnx` / the export cache, or made there once: for MiniLM from the weights alone by
audiosearch.models.onnx.bert_text (with or without torch: its graph costs 1.04-1.35x less CPU per query than torch's
export, with the same vectors; docs/performance.md), else with torch's exporter where torch is installed.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from audiosearch.core.errors import ModelLoadError
from audiosearch.models.onnx.text import OnnxTextSide, find_export
from audiosearch.models.registry import text_core


@text_core("minilm")
@text_core("roberta")
def onnx_text_side(ctx: Any, **_options: object) -> OnnxTextSide:
    """ctx: audiosearch.models.slim.TextContext (the model's source, fingerprint and an explicit export folder)."""
    directory = find_export(ctx.fingerprint, ctx.onnx_dir)
    if directory is None:
        from audiosearch.models.onnx import bert_text

        if bert_text.made_here(ctx.config):
            directory = bert_text.cached_bert_export(ctx.config, ctx.weights, ctx.fingerprint, ctx.directory)
        elif importlib.util.find_spec("torch") is None:
            raise ModelLoadError(
                f"model {ctx.fingerprint} has no ONNX text export here and torch is not installed to make one: "
                "run `audiosearch export-onnx --model MODEL --cache` where torch is installed, then copy the "
                "folder it prints into $AUDIOSEARCH_ONNX_CACHE"
            )
        else:
            from audiosearch.models.onnx.export import cached_text_export

            directory = cached_text_export(ctx.name_or_path, ctx.fingerprint)
    return OnnxTextSide(directory, ctx.fingerprint, ctx.threads)
