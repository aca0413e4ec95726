"""The text side: lite's MiniLM in onnxruntime (the service's default) vs in torch, per query at batch 1/8/32.

Usage: .venv-dev/bin/python -m bench.text_encoder [--rounds 5] [--threads 0]

Both are the same model (the same tokenizer ids; vectors equal to 1e-4, tests/models/test_onnx.py), timed in one
process on the same distinct queries, rounds alternating so load from elsewhere falls on both; the baseline is
torch as a user runs it (eager, inference mode). Appends to bench/results/text_encoder.csv.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from bench.common import append_csv, load_avg, machine
from bench.query import queries


def per_query_ms(encode, texts: list[str], batch: int) -> float:
    t = time.perf_counter()
    for i in range(0, len(texts), batch):
        encode(texts[i : i + batch])
    return (time.perf_counter() - t) / len(texts) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--queries", type=int, default=256)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    args = ap.parse_args()

    import torch

    from audiosearch.models import load_encoder, load_model

    onnx, eager = load_encoder("lite"), load_model("lite")
    assert type(onnx).__name__ == "SlimEncoder"
    texts = queries(args.queries, seed=3)
    a, b = onnx.encode_text(texts[:32]), eager.encode_text(texts[:32])
    print(
        f"machine: {machine()}; torch threads {torch.get_num_threads()}; max |onnx - torch| {np.abs(a - b).max():.1e}"
    )
    rows = []
    for batch in args.batches:
        o_ms, t_ms = [], []
        for r in range(args.rounds):
            chunk = texts[(r * 17) % 64 :]  # another order each round
            o_ms.append(per_query_ms(onnx.encode_text, chunk, batch))
            t_ms.append(per_query_ms(eager.encode_text, chunk, batch))
        o, t = statistics.median(o_ms), statistics.median(t_ms)
        load = load_avg()
        rows.append(
            {
                "batch": batch,
                "onnx_ms_per_query": round(o, 2),
                "torch_ms_per_query": round(t, 2),
                "x_faster": round(t / o, 2),
                "load_avg": load,
            }
        )
        print(
            f"batch {batch:>2}: onnxruntime {o:.2f} ms/query, torch {t:.2f} ms/query: x{t / o:.2f} | load {load}",
            flush=True,
        )
    print(f"appended to {append_csv('text_encoder', rows)}")


if __name__ == "__main__":
    main()
