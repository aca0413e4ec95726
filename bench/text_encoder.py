"""The text side: lite's MiniLM in onnxruntime (the service's default) vs in torch, per query at batch 1/8/32;
or, with --exports, other ONNX text exports (quantised, another graph, other thread counts) vs lite's.

Usage: .venv-dev/bin/python -m bench.text_encoder [--rounds 5] [--batches 1 8 32]
       .venv-dev/bin/python -m bench.text_encoder --exports int8=/tmp/eval-text-quant/exports/int8 [--threads 1 2]

Both sides are timed in one process on the same distinct queries, rounds alternating so load from elsewhere falls
on both. The torch baseline is torch as a user runs it (eager, inference mode); the exports' baseline is lite's
own export (fp32) with the same thread count, and each export's cosine to it is taken on the real captions of
the training pools (esc10, 0ad, sonicpi, animals_cc0: booth/ stays evaluation only), raw and "the sound of ...".
CPU ms per query (process time) is printed too: on a shared machine it moves less than wall time.
Appends to bench/results/text_encoder.csv (torch) or text_exports.csv (--exports).
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bench.common import append_csv, load_avg, machine
from bench.query import queries

CAPTION_POOLS = ("esc10", "0ad", "sonicpi", "animals_cc0")


def per_query_ms(encode: Callable, texts: list[str], batch: int) -> tuple[float, float]:
    """(wall, CPU) ms per query, encoding `texts` in batches of `batch`."""
    t, c = time.perf_counter(), time.process_time()
    for i in range(0, len(texts), batch):
        encode(texts[i : i + batch])
    return (time.perf_counter() - t) / len(texts) * 1e3, (time.process_time() - c) / len(texts) * 1e3


def alternate(encoders: dict[str, Callable], texts: list[str], batch: int, rounds: int) -> dict[str, tuple]:
    """Median (wall, CPU) ms per query of each encoder, the order reversed every other round."""
    got: dict[str, list] = {name: [] for name in encoders}
    for r in range(rounds):
        chunk = texts[(r * 17) % 64 :]  # another order each round
        for name in list(encoders)[:: 1 if r % 2 == 0 else -1]:
            got[name].append(per_query_ms(encoders[name], chunk, batch))
    return {n: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v)) for n, v in got.items()}


def captions() -> list[str]:
    root = Path(os.environ.get("AUDIOSEARCH_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
    found: set[str] = set()
    for pool in CAPTION_POOLS:
        with open(root / pool / "captions.csv", newline="") as f:
            found |= {row["caption"] for row in csv.DictReader(f)}
    raw = sorted(found)
    return raw + [f"the sound of {c}" for c in raw]


def versus_torch(args: argparse.Namespace) -> None:
    import torch

    from audiosearch.models import load_encoder, load_model

    onnx, eager = load_encoder("lite"), load_model("lite")
    assert type(onnx).__name__ == "SlimEncoder"
    texts = queries(args.queries, seed=3)
    a, b = onnx.encode_text(texts[:32]), eager.encode_text(texts[:32])
    gap = np.abs(a - b).max()
    print(f"machine: {machine()}; torch threads {torch.get_num_threads()}; max |onnx - torch| {gap:.1e}")
    rows = []
    for batch in args.batches:
        got = alternate({"onnx": onnx.encode_text, "torch": eager.encode_text}, texts, batch, args.rounds)
        (o, _), (t, _) = got["onnx"], got["torch"]
        rows.append({"batch": batch, "onnx_ms_per_query": round(o, 2), "torch_ms_per_query": round(t, 2),
                     "x_faster": round(t / o, 2), "load_avg": load_avg()})  # fmt: skip
        print(f"batch {batch:>2}: onnxruntime {o:.2f} ms/query, torch {t:.2f} ms/query: x{t / o:.2f} "
              f"| load {load_avg()}", flush=True)  # fmt: skip
    print(f"appended to {append_csv('text_encoder', rows)}")


def versus_exports(args: argparse.Namespace) -> None:
    from audiosearch.models import load_encoder
    from audiosearch.models.onnx.text import OnnxTextSide

    lite = load_encoder("lite")
    folders = {"lite": lite.text_side.directory, **dict(e.split("=", 1) for e in args.exports)}
    sides = {f"{n}, {t or 'auto'} threads": OnnxTextSide(d, lite.fingerprint, t) for t in args.threads
             for n, d in folders.items()}  # fmt: skip
    base_of = {name: f"lite, {name.split(', ')[-1]}" for name in sides}  # lite's export at the same threads
    caps, texts = captions(), queries(args.queries, seed=3)
    ref = lite.text_side.encode(caps)
    cosine = {n: (s.encode(caps) * ref).sum(axis=1) for n, s in sides.items()}
    print(f"machine: {machine()}; {len(caps)} captions; baseline lite's export ({folders['lite']})")
    rows = []
    for batch in args.batches:
        got = alternate({n: s.encode for n, s in sides.items()}, texts, batch, args.rounds)
        for name, (wall, cpu) in got.items():
            base_wall, base_cpu = got[base_of[name]]
            row = {"export": name, "batch": batch, "ms_per_query": round(wall, 2), "cpu_ms_per_query": round(cpu, 2),
                   "x_faster": round(base_wall / wall, 2), "x_less_cpu": round(base_cpu / cpu, 2),
                   "cosine_min": round(float(cosine[name].min()), 4),
                   "cosine_mean": round(float(cosine[name].mean()), 4), "load_avg": load_avg()}  # fmt: skip
            rows.append(row)
            print(f"batch {batch:>2}, {name}: {wall:.2f} ms/query (x{row['x_faster']}), {cpu:.2f} CPU ms/query "
                  f"(x{row['x_less_cpu']}), cosine to lite min {row['cosine_min']} mean {row['cosine_mean']} "
                  f"| load {row['load_avg']}", flush=True)  # fmt: skip
    print(f"appended to {append_csv('text_exports', rows)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--queries", type=int, default=256)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--exports", nargs="+", default=[], metavar="NAME=DIR", help="time these exports against lite's")
    ap.add_argument("--threads", type=int, nargs="+", default=[0], help="onnxruntime intra-op threads (--exports)")
    args = ap.parse_args()
    versus_exports(args) if args.exports else versus_torch(args)


if __name__ == "__main__":
    main()
