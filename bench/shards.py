"""A sharded compressed index (`serve --ray --shards M`): recall@10 against exact search, next to the single
process's, and what one shard holds in memory.

Usage: .venv/bin/python -m bench.shards [--windows 100000] [--shards 1 2 4] [--queries 200] [--cache DIR] [--json]

The library is bench.scale's: N lite-shaped windows (bench.faiss.lite_like, one per file) in the real snapshot
format, the compressed kind forced (`--faiss auto` under flat_max_windows 0: IVF-PQ fast-scan codes re-ranked from
vectors.npy), built once into --cache. Text queries are bench.query's distinct strings, encoded by lite's text
tower. For each M the M shards (audiosearch.indexer.search.shards.ShardPart, in this process: what each Ray
actor runs) answer the top 10 windows, merged as the ingress merges them; recall@10 is against an exact scan of
the same vectors, `same` the share of the single process's top 10 (RerankedSearch over the whole index) found.
Memory: the bytes of shard 0's inverted lists (ids and codes; every shard also keeps the coarse quantizer
whole) against the whole index's, and the RSS shard 0 adds when loaded alone in a fresh process (held, and the
peak while loading: the whole index is read once, then cut). Appends to bench/results/shards.csv;
--json prints one line per M.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np

from bench.common import append_csv, load_avg, machine, recall, rss_mb


def held_peak_mb() -> tuple[float, float]:
    """(VmRSS, VmHWM) of this process in MB."""
    return rss_mb(os.getpid()), rss_mb(os.getpid(), "VmHWM")


def load_one(snapshot: str, shard: int, shards: int) -> None:
    """In a fresh process: the RSS one shard adds, held and at its peak while loading (one JSON line)."""
    from audiosearch.indexer.search.shards import ShardPart

    base, _ = held_peak_mb()
    part = ShardPart(Path(snapshot), shard, shards)
    held, peak = held_peak_mb()
    print(json.dumps({"held_mb": round(held - base, 1), "peak_mb": round(peak - base, 1), "bytes": part.nbytes}))  # noqa: T201


def measure_load(snapshot: Path, shard: int, shards: int) -> dict:
    cmd = [sys.executable, "-m", "bench.shards", "--load-one", str(snapshot), str(shard), str(shards)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=1800).stdout
    return json.loads(out.strip().splitlines()[-1])


def sharded_top10(snapshot: Path, shards: int, vectors: np.ndarray) -> tuple[np.ndarray, float]:
    """The merged top 10 of M in-process shards, and the seconds their loads took (one after the other)."""
    from audiosearch.indexer.search.shards import ShardedCandidates, ShardPart

    t = time.perf_counter()
    parts = [ShardPart(snapshot, i, shards) for i in range(shards)]
    load_s = time.perf_counter() - t
    merged = ShardedCandidates(lambda m, q, k: [getattr(p, m)(q, k) for p in parts], [p.info() for p in parts])
    return merged.search(vectors, 10)[1], load_s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--windows", type=int, default=100_000)
    ap.add_argument("--shards", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "audiosearch-bench-scale")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--load-one", nargs=3, metavar=("SNAPSHOT", "SHARD", "SHARDS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.load_one:
        return load_one(args.load_one[0], int(args.load_one[1]), int(args.load_one[2]))

    from audiosearch.indexer.faiss_index import MEMORY_BYTES, IndexPolicy
    from audiosearch.indexer.search.backends import RerankedSearch
    from audiosearch.indexer.search.shards import list_bytes
    from audiosearch.indexer.store import SnapshotReader
    from audiosearch.models import load_encoder
    from bench.query import queries
    from bench.scale import library

    model = load_encoder("lite")
    idx, _ = library(args.cache, args.windows, model.fingerprint, IndexPolicy(0, MEMORY_BYTES))
    reader = SnapshotReader(idx)
    qvec = model.encode_text(queries(args.queries, seed=400, block=40))
    exact = faiss.knn(qvec, reader.vectors_of(np.arange(reader.index.ntotal)), 10, faiss.METRIC_INNER_PRODUCT)[1]
    single = RerankedSearch(reader.index, reader.vectors).search(qvec, 10)[1]
    whole = list_bytes(faiss.downcast_index(reader.index))
    print(
        f"machine: {machine()}; {args.windows} lite-shaped windows, {reader.manifest['faiss']} "
        f"(lists {whole / 1e6:.1f} MB), {args.queries} text queries; single process recall@10 "
        f"{recall(single, exact):.4f}; load {load_avg()}",
        flush=True,
    )
    rows = []
    for m in args.shards:
        top, load_s = sharded_top10(reader.snapshot, m, qvec)
        mem = measure_load(reader.snapshot, 0, m)
        row = {
            "windows": args.windows, "index": reader.manifest["faiss"], "shards": m,
            "recall_at_10": round(recall(top, exact), 4), "single_recall_at_10": round(recall(single, exact), 4),
            "same_as_single": round(recall(top, single), 4), "shard_mb": round(mem["bytes"] / 1e6, 2),
            "whole_mb": round(whole / 1e6, 2), "held_mb": mem["held_mb"], "load_peak_mb": mem["peak_mb"],
            "load_s": round(load_s / m, 2), "load_avg": load_avg(),
        }  # fmt: skip
        rows.append(row)
        print(
            f"  {m} shard(s): recall@10 {row['recall_at_10']:.4f}, same as single {row['same_as_single']:.4f}; "
            f"shard 0's lists {row['shard_mb']} MB of {row['whole_mb']}, RSS held {row['held_mb']} MB, "
            f"peak while loading {row['load_peak_mb']} MB, load {row['load_s']} s",
            flush=True,
        )
    append_csv("shards", rows)
    if args.json:
        for row in rows:
            print(json.dumps(row))  # noqa: T201
    return None


if __name__ == "__main__":
    main()
