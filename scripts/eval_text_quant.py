"""Held-out retrieval with lite's text side quantised against fp32: the model-card sets and the hybrid table sets.

The audio side is embedded once; only the text export that encodes the queries changes, so every difference
is the quantisation's. Variants (onnxruntime.quantization.quantize_dynamic of lite's text export, activations
quantised per call): `int8` (MatMul weights only, per output channel, signed: the candidate), `int8-rr` (7-bit
weights), `uint8`, `int8-per-tensor`, `int8-all-ops` (the word-embedding Gather too) and `int8-ffn` (only the
feed-forward MatMuls, 2/3 of the weights); `w8-b32/64/128` quantise instead per block (MatMulNBits: 8-bit
weights per block of that many input rows, activations per block at accuracy level 4). --exports NAME=DIR adds
other export folders (another graph).

Model card (scripts/eval_bridge.py's sets and metrics): esc10-f5, booth, 0ad-held, 0ad-held-aisfx, queries raw
and "the sound of <caption>"; systems sharing lite's MiniLM query vector: bridge, class match, fusion (= lite).
Hybrid (scripts/eval_hybrid.py's sets, namings and served pages, shipped fusion weights): libraries indexed
with the fp32 text side (an existing index answering quantised queries; --int8-index also indexes them with
the quantised one, file words included). booth/ is evaluation only: no variant is chosen by it.
Prints mAP@10 of fp32, each variant's difference, and the largest difference against the 0.005 gate.
Usage: nice python scripts/eval_text_quant.py [--variants int8 int8-rr] [--seeds 20] [--no-hybrid] [--int8-index]
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

import eval_bridge as card  # noqa: E402
import eval_hybrid as hybrid  # noqa: E402

from audiosearch.core.atomic import atomic_directory  # noqa: E402
from audiosearch.models import load_encoder, load_model  # noqa: E402
from audiosearch.models.onnx.text import GRAPH, META, TOKENIZER, OnnxTextSide, read_meta  # noqa: E402
from audiosearch.models.towers.cores.bridge import class_match_scores  # noqa: E402
from bench.common import append_csv, load_avg  # noqa: E402

GATE = 0.005  # largest mAP@10 change adopted
VARIANTS = {
    "int8": {},
    "int8-rr": {"reduce_range": True},
    "uint8": {"weight_type": "uint8"},
    "int8-per-tensor": {"per_channel": False},
    "int8-all-ops": {"ops": []},
    "int8-ffn": {"ffn_only": True},
    "w8-b32": {"blockwise": 32},
    "w8-b64": {"blockwise": 64},
    "w8-b128": {"blockwise": 128},
}
Key = tuple[str, str, str]  # (table row, set, variant)


def quantized_export(src: Path, out: Path, **overrides: object) -> Path:
    """`out`: the text export in `src` with its graph quantised dynamically (the `int8` candidate unless
    `overrides` say otherwise); export.json records how."""
    if "blockwise" in overrides:
        return blockwise_export(src, out, int(overrides["blockwise"]))  # type: ignore[call-overload]
    from onnxruntime.quantization import QuantType, quantize_dynamic

    how = {"weight_type": "int8", "per_channel": True, "reduce_range": False, "ops": ["MatMul"], **overrides}
    kind = {"int8": QuantType.QInt8, "uint8": QuantType.QUInt8}[how["weight_type"]]
    nodes = ffn_matmuls(src / GRAPH) if how.get("ffn_only") else None
    ops = list(how["ops"]) or None  # None: every op the quantiser knows

    def write(graph: Path) -> None:
        quantize_dynamic(src / GRAPH, graph, op_types_to_quantize=ops, per_channel=how["per_channel"],
                         reduce_range=how["reduce_range"], weight_type=kind, nodes_to_quantize=nodes)  # fmt: skip

    return _export_beside(src, out, how, write)


def blockwise_export(src: Path, out: Path, block: int) -> Path:
    """`out`: the text export in `src` with MatMul weights int8 per block of `block` input rows (MatMulNBits),
    products in int8 with activations quantised per block too (accuracy_level 4), not per tensor."""
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer

    how = {"bits": 8, "block_size": block, "is_symmetric": True, "accuracy_level": 4}

    def write(graph: Path) -> None:
        config = DefaultWeightOnlyQuantConfig(**how)
        quantizer = MatMulNBitsQuantizer(onnx.load(str(src / GRAPH)), **how, algo_config=config)
        quantizer.process()
        quantizer.model.save_model_to_file(str(graph))

    return _export_beside(src, out, {"matmul_nbits": how}, write)


def _export_beside(src: Path, out: Path, how: dict, write: Callable[[Path], None]) -> Path:
    """`out`: an export with the graph `write(path)` makes, src's tokenizer, and src's export.json plus `how`."""
    with atomic_directory(out) as tmp:
        write(tmp / GRAPH)
        shutil.copy(src / TOKENIZER, tmp / TOKENIZER)
        (tmp / META).write_text(json.dumps({**read_meta(src), "quantization": how}, indent=2))
    return out


def ffn_matmuls(graph: Path) -> list[str]:
    """The MatMuls whose weight has the feed-forward width (the widest of the MatMul weights, 1536 in MiniLM)."""
    import onnx

    model = onnx.load(str(graph))
    shapes = {t.name: tuple(t.dims) for t in model.graph.initializer}
    weights = {n.name: [shapes[i] for i in n.input if i in shapes] for n in model.graph.node if n.op_type == "MatMul"}
    width = max(d for ws in weights.values() for w in ws for d in w)
    return [name for name, ws in weights.items() if any(width in w for w in ws)]


def text_sides(work: Path, names: list[str], folders: dict[str, str]) -> tuple[object, dict[str, OnnxTextSide]]:
    """lite's encoder (fp32 text side) and a text side per variant, fp32 first."""
    lite = load_encoder("lite")
    fp32 = lite.text_side.directory
    sides = {"fp32": lite.text_side}
    for name in names:
        out = work / "exports" / name
        if not out.is_dir():
            quantized_export(fp32, out, **VARIANTS[name])
        sides[name] = OnnxTextSide(out, lite.fingerprint)
    sides.update({name: OnnxTextSide(d, lite.fingerprint) for name, d in folders.items()})
    return lite, sides


def model_card(sets: list[card.EvalSet], sides: dict[str, OnnxTextSide]) -> dict[Key, float]:
    bridge, fusion = load_model("bridge"), load_model("fusion")
    tagger, prompts, sr = bridge.audio_tower.core.tagger, bridge.audio_tower.core.prompt_emb, bridge.sample_rate
    out: dict[Key, float] = {}
    for s in sets:
        audio = {
            name: card.embed_clips(lambda w, n, m=model: m.encode_audio(w, sr, lengths=n), s.paths, sr)
            for name, model in (("bridge", bridge), ("fusion (lite)", fusion))
        }
        probs, owner = card.embed_clips(lambda w, n: tagger.scores(w, n)[0], s.paths, sr)
        rel = s.relevance()
        for variant, side in sides.items():
            for form, texts in card.query_forms(s.queries).items():
                q = side.encode(texts)
                sims = {name: q @ a.T for name, (a, _) in audio.items()}
                sims["class match"] = class_match_scores(q, probs, prompts)
                for name, sim in sims.items():
                    m = card.metrics(card.clip_max(sim, owner, len(s.paths)), rel)
                    out[(f"{name}, {form}", s.name, variant)] = m["mAP@10"]
    return out


class _Queries:
    """What eval_hybrid.served_metrics needs of a model: encode_text, here by one text side."""

    def __init__(self, side: OnnxTextSide) -> None:
        self.side = side

    def encode_text(self, texts: list[str]) -> np.ndarray:
        return self.side.encode(texts)


def hybrid_table(libs: list[hybrid.Library], sides: dict[str, OnnxTextSide], seeds: int) -> dict[Key, float]:
    out: dict[Key, float] = {}
    for lib in libs:
        naming = hybrid._kind(lib.naming)
        weight = 1 / seeds if naming == "half" else 1.0
        for variant, side in sides.items():
            for mode in ("audio", "text", "hybrid"):
                m = hybrid.served_metrics(lib, _Queries(side), mode, hybrid.FUSION)
                key = (f"{naming}, {mode}", lib.set_name, variant)
                out[key] = out.get(key, 0.0) + weight * m["mAP@10"]
    return out


def print_table(title: str, res: dict[Key, float], variants: list[str]) -> dict[str, float]:
    """fp32 mAP@10 and each variant's difference per cell (also appended to bench/results/text_quant.csv);
    returns each variant's largest |difference|."""
    rows, sets = list(dict.fromkeys(k[0] for k in res)), list(dict.fromkeys(k[1] for k in res))
    print(f"\n{title}: mAP@10 of fp32, then {' / '.join(variants)} minus fp32\n")
    print("| row | " + " | ".join(sets) + " |\n|---|" + "---|" * len(sets))
    worst, total = dict.fromkeys(variants, 0.0), dict.fromkeys(variants, 0.0)
    csv_rows: list[dict] = []
    for row in rows:
        cells = []
        for s in sets:
            base = res[(row, s, "fp32")]
            diffs = [res[(row, s, v)] - base for v in variants]
            for v, d in zip(variants, diffs, strict=True):
                worst[v], total[v] = max(worst[v], abs(d)), total[v] + d / (len(rows) * len(sets))
            cells.append(f"{base:.3f} ({' / '.join(f'{d:+.3f}' for d in diffs)})")
            csv_rows += [{"table": title, "row": row, "set": s, "variant": v, "map10_fp32": round(base, 4),
                          "map10_minus_fp32": round(d, 4), "load_avg": load_avg()}
                         for v, d in zip(variants, diffs, strict=True)]  # fmt: skip
        print(f"| {row} | " + " | ".join(cells) + " |")
    for v, w in worst.items():
        verdict = "within" if w <= GATE else "OUTSIDE"
        print(f"{title}, {v}: largest |mAP@10 difference| {w:.4f} ({verdict} {GATE}), mean difference {total[v]:+.4f}")
    append_csv("text_quant", csv_rows)
    return worst


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--exports", nargs="+", default=[], metavar="NAME=DIR", help="other export folders")
    ap.add_argument("--work", type=Path, default=Path("/tmp/eval-text-quant"), help="exports, libraries, indexes")
    ap.add_argument("--seeds", type=int, default=20, help="random halves per hybrid set")
    ap.add_argument("--no-card", action="store_true", help="skip the model-card sets")
    ap.add_argument("--no-hybrid", action="store_true", help="skip the hybrid sets")
    ap.add_argument("--int8-index", action="store_true", help="also index the hybrid sets with the int8 text side")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    folders = dict(e.split("=", 1) for e in args.exports)
    lite, sides = text_sides(args.work, args.variants, folders)
    args.variants = [*args.variants, *folders]
    for name, side in sides.items():
        print(f"{name}: {side.directory}")
    if not args.no_card:
        sets = card.load_sets(card.data_root(), ["esc10-f5", "booth", "0ad-held", "0ad-held-aisfx"], 0.2, 0)
        print_table("model card", model_card(sets, sides), args.variants)
    if args.no_hybrid:
        return
    sets = hybrid.load_sets(card.data_root())
    libs = list(hybrid.build_libraries(sets, args.work / "fp32-index", lite, args.seeds))
    fp32_index = hybrid_table(libs, sides, args.seeds)
    print_table("hybrid, fp32 index", fp32_index, args.variants)
    if args.int8_index:
        lite.text_side = sides["int8"]  # file words embedded by the quantised side too
        libs = list(hybrid.build_libraries(sets, args.work / "int8-index", lite, args.seeds))
        res = hybrid_table(libs, {"int8 everywhere": sides["int8"]}, args.seeds)
        res.update({k: v for k, v in fp32_index.items() if k[2] == "fp32"})
        print_table("hybrid, all int8 vs all fp32", res, ["int8 everywhere"])


if __name__ == "__main__":
    main()
