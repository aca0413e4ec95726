"""Recall@10 against exact search, latency and memory for Flat, HNSW32 and IVF-PQ.

Usage: .venv-dev/bin/python -m bench.faiss [--n 1000000] [--queries 200] [--data clustered random]
Vectors shaped like lite's (`--data lite`: 384-d score-weighted means of YAMNet class-prompt embeddings, what
users index), random unit vectors (the worst case for approximate indexes: no cluster structure) and vectors
with synthetic cluster structure. Search settings are the service's
(audiosearch.indexer.faiss_index.tune_for_search: HNSW efSearch 128, IVF nprobe nlist/16) unless --nprobe is given.
Only one data set and one index are held at a time (1M x 1024 float32 is 4 GB per copy); the exact answer
comes from a blocked brute-force scan of the base array, not from a second copy in a Flat index.
Appends to bench/results/faiss.csv.
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import faiss
import numpy as np

from bench.common import append_csv, load_avg, machine, random_unit, recall


def clustered(n: int, dim: int, clusters: int = 1000, seed: int = 2) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = random_unit(clusters, dim, seed)
    owner = rng.integers(0, clusters, n)
    out = np.empty((n, dim), dtype=np.float32)
    for i in range(0, n, 100_000):  # blocks keep the temporaries small; same draws as one big call
        m = min(100_000, n - i)
        block = centers[owner[i : i + m]] + 0.05 * rng.standard_normal((m, dim)).astype(np.float32)
        out[i : i + m] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


LITE_DIM = 384  # lite's vectors


def lite_like(n: int, seed: int = 5, top_k: int = 20) -> np.ndarray:
    """Vectors shaped like lite's (384-d): each is the score-weighted mean of the MiniLM embeddings of 20 of
    YAMNet's 521 class prompts, as the label bridge makes them, with random sparse class sets and scores (a few
    common classes weigh most, as in real libraries). lite's trained residual moves them a little; the
    structure (a 384-d space spanned by 521 prompt directions) is what makes an index easy or hard."""
    out = np.empty((n, LITE_DIM), dtype=np.float32)
    i = 0
    for block in lite_like_blocks(n, seed, top_k):
        out[i : i + len(block)] = block
        i += len(block)
    return out


def lite_like_blocks(n: int, seed: int = 5, top_k: int = 20, block: int = 50_000) -> Iterator[np.ndarray]:
    """lite_like(n) in blocks of `block` rows (the same vectors): libraries larger than RAM are built streaming."""
    from audiosearch.models.towers.cores.bridge import PROMPTS, load_prompt_embeddings

    prompts, _ = load_prompt_embeddings(PROMPTS)  # (521, 384), unit rows
    rng = np.random.default_rng(seed)
    popularity = rng.dirichlet(np.full(len(prompts), 0.3))  # how often each class shows up in a library
    with np.errstate(divide="ignore"):  # a class of popularity 0 gets key -inf: never drawn, as with choice
        log_popularity = np.log(popularity)
    for i in range(0, n, block):
        m = min(block, n - i)
        # top_k classes by popularity without replacement, every row at once: the k largest of log p plus Gumbel
        # noise (-log of an exponential) draw as rng.choice(replace=False, p=...) does row by row, 4x faster here
        # float64 draws: a float32 exponential is exactly 0 about once a block, a key of +inf always drawn
        keys = log_popularity - np.log(rng.standard_exponential((m, len(prompts))))
        classes = np.argpartition(keys, len(prompts) - top_k, axis=1)[:, -top_k:]
        scores = rng.exponential(1.0, (m, top_k)).astype(np.float32) ** 2  # one or two classes dominate
        weights = np.zeros((m, len(prompts)), np.float32)  # each row's class weights, as one matrix product
        np.put_along_axis(weights, classes, scores / scores.sum(1, keepdims=True), axis=1)
        vecs = weights @ prompts
        yield (vecs / np.linalg.norm(vecs, axis=1, keepdims=True)).astype(np.float32)


def exact_top10(base: np.ndarray, queries: np.ndarray) -> np.ndarray:
    return faiss.knn(queries, base, 10, metric=faiss.METRIC_INNER_PRODUCT)[1]


def measure(
    factory: str, base: np.ndarray, queries: np.ndarray, truth: np.ndarray, args: argparse.Namespace
) -> list[dict]:
    """One row at the service's search settings, then one per --ef value for HNSW (searching is cheap, building
    is not, so the same index answers every setting)."""
    from audiosearch.indexer.faiss_index import new_index, tune_for_search

    index = new_index(base.shape[1], factory)  # the indexer's own settings
    t = time.perf_counter()
    faiss.omp_set_num_threads(os.cpu_count() or 1)  # build with every core ...
    if not index.is_trained:
        index.train(base[: min(len(base), args.train)])
    for i in range(0, len(base), 100_000):  # add in blocks: FAISS copies what it is given
        index.add(base[i : i + 100_000])
    faiss.omp_set_num_threads(1)  # ... and time single queries the way the service runs them
    build = time.perf_counter() - t
    with tempfile.TemporaryDirectory() as tmp:
        faiss.write_index(index, str(Path(tmp) / "x"))
        size = (Path(tmp) / "x").stat().st_size
    tune_for_search(index, nprobe=args.nprobe)  # the service's search settings
    rows = [(_settings(index), *_search(index, queries, truth))]
    if getattr(faiss.downcast_index(index), "hnsw", None) is not None:
        for ef in args.ef:
            rows.append((f"efSearch {ef}", *_search(tune_for_search(index, ef_search=ef), queries, truth)))
    # New columns go last, so rows from before they existed still line up under the header.
    return [
        {
            "factory": factory,
            "recall_at_10": recall,
            "p50_ms": p50,
            "bytes_per_vector": round(size / len(base), 1),
            "build_s": round(build, 1),
            "settings": settings,
            "train_n": min(len(base), args.train) if "IVF" in factory else 0,
            "load_avg": load,
        }
        for settings, recall, p50, load in rows
    ]


def _search(index: faiss.Index, queries: np.ndarray, truth: np.ndarray) -> tuple[float, float, str]:
    lat = []
    found = np.zeros((len(queries), 10), dtype=np.int64)
    for i, q in enumerate(queries):
        t = time.perf_counter()
        found[i] = index.search(q[None], 10)[1][0]
        lat.append(time.perf_counter() - t)
    return round(recall(found, truth), 4), round(float(np.median(lat)) * 1e3, 3), load_avg()


def _settings(index: faiss.Index) -> str:
    hnsw = getattr(faiss.downcast_index(index), "hnsw", None)
    if hnsw is not None:
        return f"efSearch {hnsw.efSearch}"
    ivf = faiss.try_extract_index_ivf(index)
    return f"nprobe {ivf.nprobe}" if ivf is not None else "exact"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=1024)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--nlist", type=int, default=4096)
    ap.add_argument("--nprobe", type=int, default=None, help="IVF nprobe (default: the service's, nlist/16)")
    ap.add_argument("--pq", type=int, default=0, help="PQ sub-quantizers (default dim/32)")
    ap.add_argument("--ef", type=int, nargs="*", default=[256, 512], help="HNSW efSearch values to try as well")
    ap.add_argument("--train", type=int, default=100_000, help="IVF training sample (vectors)")
    ap.add_argument(
        "--data", nargs="+", default=["lite", "random", "clustered"], choices=["lite", "random", "clustered"]
    )
    ap.add_argument(
        "--factories",
        nargs="+",
        default=None,
        help="FAISS factories (default: Flat HNSW32 IVF{nlist},PQ{pq} IVF{nlist},Flat)",
    )
    args = ap.parse_args()
    pq = args.pq or max(8, args.dim // 32)
    factories = args.factories or ["Flat", "HNSW32", f"IVF{args.nlist},PQ{pq}", f"IVF{args.nlist},Flat"]
    print(f"machine: {machine()}; {args.n} vectors ({args.dim}-d, lite-like 384-d); load average {load_avg()}")
    for kind in args.data:
        if kind == "lite":
            base = lite_like(args.n)  # always 384-d, whatever --dim says
        else:
            base = random_unit(args.n, args.dim) if kind == "random" else clustered(args.n, args.dim)
        queries = base[np.random.default_rng(3).choice(len(base), args.queries, replace=False)] + 0.0
        queries += 0.02 * np.random.default_rng(4).standard_normal(queries.shape).astype(np.float32)
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
        truth = exact_top10(base, queries)
        for factory in factories:
            rows = [
                {"data": kind, "n": args.n, **r, "dim": base.shape[1]}
                for r in measure(factory, base, queries, truth, args)
            ]
            gc.collect()  # drop this index before the next one is built
            for r in rows:
                r["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
            path = append_csv("faiss", rows)  # index by index: a 1M run takes an hour, keep what finished
            for r in rows:
                print(
                    f"{kind:>9} {factory:>16} ({r['settings']}): recall@10 {r['recall_at_10']:.3f}  "
                    f"p50 {r['p50_ms']:.2f} ms  {r['bytes_per_vector']:.0f} B/vector  build {r['build_s']} s  "
                    f"load {r['load_avg']}  peak RSS {r['peak_rss_mb']} MB",
                    flush=True,
                )
        del base
    print(f"appended to {path}")


if __name__ == "__main__":
    main()
