"""GPU figures in one short run on a lent machine.

1. PaSST-S forward (fp16 autocast) on pre-decoded 10 s windows at several batch sizes: clips/s, GPU memory.
2. The indexer end to end (decode workers on the CPU cores, PaSST-S on the GPU) against (1) at the same
   batch size and against the naive loop (librosa.load + one clip per forward), at two library sizes.
3. Exact top-10 search over 1M 1024-d vectors: the service's GPU backend (torch, fp32; fp16 beside it) against
   faiss IndexFlatIP on all CPU cores, batch 1 and 64, with the top-10 agreement and the largest score difference.
4. Paper-size tower training (PaSST-S + RoBERTa-large shapes, both trained) with fp16 autocast and loss
   scaling, step checkpoints on: steps/s, peak GPU memory, and the scaler state in the checkpoint.

Weights are random (no hub here): timings are those of the trained models. `--tokenizer` names any
BERT-style tokenizer directory (the RoBERTa tower needs one; MiniLM's works, see the README's GPU section).
`--smoke` runs every section with tiny sizes on the CPU, to check the script before spending device time.

Usage: python -m bench.gpu --tokenizer DIR [--clips 1000] [--workers N] [--sections ...] [--formats ogg,wav] [--smoke]
Appends to bench/results/gpu.csv ($AUDIOSEARCH_BENCH_RESULTS to write elsewhere).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.common import append_csv, machine, paper_random_config, recall
from bench.index import library, naive_loop, peak_rss_of_index_run

REPO = Path(__file__).resolve().parents[1]
ROBERTA_LARGE_SHAPE = {
    "model_type": "roberta",
    "vocab_size": 30522,
    "hidden_size": 1024,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "intermediate_size": 4096,
    "max_position_embeddings": 514,
    "pad_token_id": 0,
}
TINY_SHAPE = {
    **ROBERTA_LARGE_SHAPE,
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
}


def bench_config(tokenizer: str, text_shape: dict[str, Any], smoke: bool):
    """PaSST-S (one small block with --smoke: the same code paths) and a random RoBERTa of `text_shape`."""
    from audiosearch.models.config import TowerConfig

    text = TowerConfig("roberta", {"source": "roberta-random", "config": text_shape, "tokenizer": tokenizer})
    config = paper_random_config(text)
    if smoke:
        config.audio.options.update({"depth": 1, "embed_dim": 64, "num_heads": 2})
    return config


def sync_time(fn: Callable[[], Any]) -> float:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - t


def peak_gb() -> float:
    return torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else float("nan")


def forward_sweep(model, files: list[Path], batches: list[int], n: int) -> list[dict]:
    from audiosearch.models import cut_windows, load_audio

    wins = [cut_windows(load_audio(f, model.sample_rate), model.sample_rate) for f in files]
    waves, lengths = np.concatenate([w.waves for w in wins]), np.concatenate([w.lengths for w in wins])
    reps = -(-n // len(waves))
    waves, lengths = np.tile(waves, (reps, 1))[:n], np.tile(lengths, reps)[:n]
    rows = []
    for b in batches:
        model.encode_audio(waves[:b], model.sample_rate, lengths[:b], b)  # warm-up: kernels for this shape
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        s = sync_time(lambda b=b: model.encode_audio(waves, model.sample_rate, lengths, b))
        rows.append({"section": "forward", "batch": b, "clips_per_s": round(n / s, 1), "gpu_gb": round(peak_gb(), 2)})
        print(f"forward  batch {b:4d}: {n / s:8.1f} clips/s, peak GPU memory {peak_gb():.2f} GB", flush=True)
    return rows


def indexing(spec: str, model, files: list[Path], tmp: Path, args: argparse.Namespace, ceiling: float) -> list[dict]:
    naive = naive_loop(model, files[: args.naive_files])
    rows = []
    for fmt, n in ((f, n) for f in args.formats.split(",") for n in (args.clips, args.clips * 3)):
        lib = library(n, tmp / f"lib-{fmt}-{n}", 10, model.sample_rate if fmt == "wav" else 0)
        decode = decode_only(lib, args.workers, model)
        cps, rss = peak_rss_of_index_run(lib, args.workers, spec, args.device, args.batch)
        rows.append(
            {
                "section": "index",
                "format": fmt,
                "batch": args.batch,
                "clips": n,
                "workers": args.workers,
                "clips_per_s": round(cps, 1),
                "ceiling_cps": round(ceiling, 1),
                "naive_cps": round(naive, 1),
                "decode_cps": round(decode, 1),
                "of_ceiling": round(cps / ceiling, 2),
                "x_naive": round(cps / naive, 2),
                "rss_mb": round(rss),
            }
        )
        print(
            f"indexer  {n} {fmt} clips, {args.workers} workers, batch {args.batch}: {cps:.1f} clips/s = "
            f"{cps / ceiling:.2f} of the forward ({ceiling:.1f}), {cps / naive:.2f}x naive ({naive:.1f}), "
            f"{cps / decode:.2f} of decoding alone ({decode:.1f}); peak RSS {rss:.0f} MB",
            flush=True,
        )
    return rows


def decode_only(lib: Path, workers: int, model) -> float:
    """The indexer's own decode pool and hand-off with no model behind it: the rate decoding alone allows.
    In a child started with -c, like the index runs: spawned workers then do not re-import this module."""
    code = "\n".join(
        [
            "import sys, time",
            "from pathlib import Path",
            "from audiosearch.indexer.build import _decoded",
            "from audiosearch.indexer.decode import DecodeJob, DecodeSettings",
            "lib, workers, sr = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])",
            "win, hop = map(float, sys.argv[4:])",
            "files = sorted(p for p in lib.rglob('*') if p.is_file())",
            "jobs = [DecodeJob(str(f), str(f), f.stat().st_size, 0, None) for f in files]",
            "s, t = DecodeSettings(sr, win, hop, 3600.0), time.perf_counter()",
            "h = lib.parent / (lib.name + '-handoff')",
            "n = sum(1 for d in _decoded(jobs, frozenset(), s, workers, h) if not d.error)",
            "print(n / (time.perf_counter() - t))",
        ]
    )
    argv = [
        str(lib),
        str(workers),
        str(model.sample_rate),
        str(model.config.window_seconds),
        str(model.config.hop_seconds),
    ]
    out = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, cwd=REPO)
    if out.returncode:
        sys.exit(f"decode run failed: {out.stderr.strip().splitlines()[-1:]}")
    return float(out.stdout.strip().splitlines()[-1])


def search(n: int, dim: int, queries: int) -> list[dict]:
    """The service's GPU backend (indexer.search.backends.TorchExactIndex, fp32) and the same in fp16, against faiss
    IndexFlatIP on every CPU core: p50 per batch, top-10 agreement and the largest score difference."""
    import faiss

    from audiosearch.indexer.search.backends import TorchExactIndex

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    rng = np.random.default_rng(0)
    base = rng.standard_normal((n, dim), dtype=np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    q = rng.standard_normal((queries, dim), dtype=np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    cpu_index = faiss.IndexFlatIP(dim)
    cpu_index.add(base)
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    truth_scores, truth = cpu_index.search(q[:64], 10)
    engines: list[tuple[str, Any]] = [
        (f"torch-{dev}-{t}", TorchExactIndex(base, dev, t)) for t in ("float32", "float16")
    ]
    del base
    rows = []
    for name, engine in [*engines, ("faiss-cpu-flat", cpu_index)]:
        scores, ids = engine.search(q[:64], 10)
        agree, worst = recall(ids, truth), float(np.abs(scores - truth_scores).max())
        for batch in (1, 64):
            times = []
            for at in range(0, min(queries, 64 * 8 if batch > 1 else 100), batch):
                times.append(sync_time(lambda e=engine, x=q[at : at + batch]: e.search(x, 10)))
            times = times[2:] or times  # first calls pay kernel and page set-up
            p50 = float(np.median(times)) * 1000
            rows.append(
                {
                    "section": "search",
                    "engine": name,
                    "vectors": n,
                    "batch": batch,
                    "p50_ms": round(p50, 3),
                    "qps": round(batch * 1000 / p50, 1),
                    "recall_vs_faiss": agree,
                    "max_score_diff": f"{worst:.1e}",
                }
            )
            print(
                f"search   {name:20s} {n} x {dim}, batch {batch:3d}: p50 {p50:8.3f} ms, "
                f"{batch * 1000 / p50:9.1f} queries/s; top 10 = faiss's for {agree:.3f}, scores within {worst:.1e}",
                flush=True,
            )
    print(f"search   faiss GPUs visible: {faiss.get_num_gpus()}")
    return rows


def training(args: argparse.Namespace, tmp: Path) -> list[dict]:
    from audiosearch.models import DualEncoder
    from audiosearch.training import TrainConfig, load_caption_csv, train_towers
    from audiosearch.training.step_checkpoint import StepCheckpoint

    torch.manual_seed(0)
    shape = TINY_SHAPE if args.smoke else ROBERTA_LARGE_SHAPE
    model = DualEncoder(bench_config(args.tokenizer, shape, args.smoke)).to(args.device)
    rows = load_caption_csv(REPO / "app" / "sample" / "captions.csv") * 4  # a few steps per epoch at batch 32
    ends: list[float] = []
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.train_batch, lr=2e-5, amp=True, seed=0)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    result = train_towers(model, rows, config=cfg, on_epoch=lambda _: ends.append(time.perf_counter()))
    steps_per_epoch = int(result.history[0]["step"])
    # epoch 1 pays feature decoding and kernel selection: time the epochs after it
    sps = steps_per_epoch * (len(ends) - 1) / (ends[-1] - ends[0])
    losses = [h["loss"] for h in result.history]
    # one more epoch with a step checkpoint at its end: the loss scaler's state must be in it
    ckpt = StepCheckpoint(tmp / "step.pt", every=steps_per_epoch, key="gpu-bench")
    save = sync_time(lambda: train_towers(model, rows, config=dataclasses.replace(cfg, epochs=1), checkpoint=ckpt))
    state = torch.load(ckpt.path, map_location="cpu", weights_only=False) if ckpt.path.exists() else {}
    scale = state.get("scaler", {}).get("scale")  # None: no scaler state (fp32, or a CPU run)
    print(
        f"training PaSST-S + RoBERTa-large shapes, batch {args.train_batch}, fp16 + loss scaling: "
        f"{sps:.2f} steps/s ({sps * args.train_batch:.1f} clips/s), peak GPU memory {peak_gb():.1f} GB, "
        f"losses {[round(x, 3) for x in losses]}; an epoch with a step checkpoint "
        f"({ckpt.path.stat().st_size / 2**30:.1f} GB) took {save:.1f} s, loss scale in it {scale}",
        flush=True,
    )
    return [
        {
            "section": "train",
            "batch": args.train_batch,
            "steps_per_s": round(sps, 3),
            "clips_per_s": round(sps * args.train_batch, 1),
            "gpu_gb": round(peak_gb(), 2),
            "loss_first": round(losses[0], 4),
            "loss_last": round(losses[-1], 4),
            "loss_scale": scale,
        }
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokenizer", required=True, help="BERT-style tokenizer directory for the RoBERTa tower")
    ap.add_argument("--clips", type=int, default=1000, help="smaller library; the larger is 3x")
    ap.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 2))
    ap.add_argument("--batch", type=int, default=64, help="indexer batch size")
    ap.add_argument("--sections", default="forward,index,search,train")
    ap.add_argument("--formats", default="ogg", help="ogg (44.1 kHz Vorbis) and/or wav (16-bit at the model's rate)")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU: checks the script")
    args = ap.parse_args()
    args.device = "cuda" if torch.cuda.is_available() and not args.smoke else "cpu"
    big = not args.smoke
    args.naive_files, args.epochs, args.train_batch = (60, 4, 32) if big else (4, 2, 4)
    sections = set(args.sections.split(","))
    from audiosearch.core.threads import configure_threads

    configure_threads()
    print(f"machine: {machine()}; torch {torch.__version__}; device {args.device}", flush=True)
    out: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        from audiosearch.models import DualEncoder, load_model, save_model

        # saved, so the child processes of the indexer runs load the same model by directory
        spec = str(save_model(DualEncoder(bench_config(args.tokenizer, TINY_SHAPE, args.smoke)), tmp / "model"))

        model = load_model(spec, args.device)
        files = sorted(library(16, tmp / "probe", clip_seconds=10).rglob("*.ogg"))
        if sections & {"forward", "index"}:
            batches = [16, 32, 64, 128, 256] if big else [2, args.batch]
            fwd = forward_sweep(model, files, sorted(set(batches) | {args.batch}), 1024 if big else 8)
            out += fwd if "forward" in sections else []
            ceiling = next(r["clips_per_s"] for r in fwd if r["batch"] == args.batch)
        if "index" in sections:
            out += indexing(spec, model, files, tmp, args, ceiling)
        del model
        if "search" in sections:
            out += search(1_000_000 if big else 5_000, 1024, 1024 if big else 130)
        if "train" in sections:
            out += training(args, tmp)
    append_csv("gpu", out)


if __name__ == "__main__":
    main()
