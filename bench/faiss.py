"""Recall@10 against exact search, latency and memory for Flat, HNSW32 and IVF-PQ.

Usage: .venv/bin/python -m bench.faiss [--n 1000000] [--queries 200]
Vectors are random unit vectors (the worst case for approximate indexes: no cluster structure), plus the
same run on vectors with cluster structure, closer to real embeddings. Appends to bench/results/faiss.csv.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np

from bench.common import append_csv, machine, random_unit


def clustered(n: int, dim: int, clusters: int = 1000, seed: int = 2) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = random_unit(clusters, dim, seed)
    x = centers[rng.integers(0, clusters, n)] + 0.05 * rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def measure(factory: str, base: np.ndarray, queries: np.ndarray, truth: np.ndarray, nprobe: int) -> dict:
    from indexer.store import new_index, tune_for_search

    index = new_index(base.shape[1], factory)  # the indexer's own settings
    t = time.perf_counter()
    faiss.omp_set_num_threads(os.cpu_count() or 1)  # build with every core ...
    if not index.is_trained:
        index.train(base[: min(len(base), 100_000)])
    index.add(base)
    faiss.omp_set_num_threads(1)  # ... and time single queries the way the service runs them
    build = time.perf_counter() - t
    tune_for_search(index, nprobe=nprobe)  # the service's search settings (HNSW efSearch 128)
    lat = []
    found = np.zeros((len(queries), 10), dtype=np.int64)
    for i, q in enumerate(queries):
        t = time.perf_counter()
        found[i] = index.search(q[None], 10)[1][0]
        lat.append(time.perf_counter() - t)
    recall = np.mean([len(set(found[i]) & set(truth[i])) / 10 for i in range(len(queries))])
    with tempfile.TemporaryDirectory() as tmp:
        faiss.write_index(index, str(Path(tmp) / "x"))
        size = (Path(tmp) / "x").stat().st_size
    return {"factory": factory, "recall_at_10": round(float(recall), 4), "p50_ms": round(np.median(lat) * 1e3, 3),
            "bytes_per_vector": round(size / len(base), 1), "build_s": round(build, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=1024)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--nlist", type=int, default=4096)
    ap.add_argument("--nprobe", type=int, default=32)
    ap.add_argument("--pq", type=int, default=0, help="PQ sub-quantizers (default dim/32)")
    args = ap.parse_args()
    print(f"machine: {machine()}; {args.n} vectors of {args.dim}-d")
    rows = []
    for kind, base in (("random", random_unit(args.n, args.dim)), ("clustered", clustered(args.n, args.dim))):
        queries = base[np.random.default_rng(3).choice(len(base), args.queries, replace=False)] + 0.0
        queries += 0.02 * np.random.default_rng(4).standard_normal(queries.shape).astype(np.float32)
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
        flat = faiss.IndexFlatIP(args.dim)
        flat.add(base)
        truth = flat.search(queries, 10)[1]
        pq = args.pq or max(8, args.dim // 32)
        for factory in ("Flat", "HNSW32", f"IVF{args.nlist},PQ{pq}", f"IVF{args.nlist},Flat"):
            r = {"data": kind, "n": args.n, **measure(factory, base, queries, truth, args.nprobe)}
            rows.append(r)
            print(f"{kind:>9} {factory:>16}: recall@10 {r['recall_at_10']:.3f}  p50 {r['p50_ms']:.2f} ms  "
                  f"{r['bytes_per_vector']:.0f} B/vector  build {r['build_s']} s")
    print(f"appended to {append_csv('faiss', rows)}")


if __name__ == "__main__":
    main()
