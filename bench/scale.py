"""`--faiss auto` at library scale: recall@10, latency over HTTP, service RSS and build time.

Usage: .venv/bin/python -m bench.scale --windows 100000 [--json] [--queries 200] [--cache DIR]
                                       [--memory-budget 8GB] [--flat-max-windows 250000]

Builds (or reuses from --cache) a library of N lite-shaped windows (bench.faiss.lite_like, one window per file) in
the real snapshot format, its index chosen as `audiosearch index --faiss auto` chooses it (faiss_index.choose_index
under the index settings: AUDIOSEARCH_INDEX_MEMORY, AUDIOSEARCH_INDEX_FLAT_MAX_WINDOWS, or the flags), serves it
with `audiosearch serve` on a free loopback port, and sends distinct text queries (bench.query.queries) encoded
there by lite's text tower. recall@10: the service's top 10 files against exact search over the same vectors with
the same query vectors (lite's encode_text in this process). p50/p99 at concurrency 1 and 8 (each its own
queries: no cache hits), the service's RSS after the runs, and the build time (of the run that built the cache).
The baseline, in this process: lite's encode_text for one query and an exact numpy scan of the same vectors, one
query after the other; the ratio is the service's QPS over the baseline's.
Appends to bench/results/scale.csv; --json prints one line
{"windows", "index", "recall_at_10", "p50_ms", "p99_ms", "rss_mb", "build_s"} (concurrency 1).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np
from faiss.contrib.exhaustive_search import knn_ground_truth

from bench.common import append_csv, free_port, load_avg, machine, pct, recall, rss_mb, synthetic_index_blocks
from bench.query import drive, queries, serve


def library(cache: Path, n: int, fingerprint: str, policy) -> tuple[Path, float]:  # noqa: ANN001
    """The index folder of n lite-shaped windows under `policy`, built once per (n, choice); its build seconds."""
    from audiosearch.indexer.faiss_index import choose_index

    factory = choose_index("auto", n, 384, policy).factory
    folder = cache / f"lite-{n}-{factory.replace(',', '_')}-{fingerprint[:12]}"
    done = folder / "bench.json"
    if done.is_file():
        return folder / "idx", json.loads(done.read_text())["build_s"]
    from bench.faiss import LITE_DIM, lite_like_blocks

    t = time.perf_counter()  # generating the vectors is part of it: they stream in, never all in memory
    synthetic_index_blocks(folder / "idx", n, LITE_DIM, lite_like_blocks(n), fingerprint, "auto", policy)
    build_s = round(time.perf_counter() - t, 1)
    done.write_text(json.dumps({"build_s": build_s}))
    return folder / "idx", build_s


def nprobe_sweep(reader, qvec: np.ndarray, exact: np.ndarray, nprobes: list[int]) -> None:  # noqa: ANN001
    """In this process, FAISS on one thread as in the service: recall@10 of the compressed index re-ranked as the
    service re-ranks it (40 windows asked, as a page of 10 files does), and the search's p50 per query, per nprobe."""
    from audiosearch.indexer.search.backends import RerankedSearch

    ivf = faiss.extract_index_ivf(reader.index)
    served, threads = ivf.nprobe, faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    search = RerankedSearch(reader.index, reader.vectors)
    for nprobe in nprobes:
        ivf.nprobe = min(nprobe, ivf.nlist)
        lat, rows = [], []
        for q in qvec:
            t = time.perf_counter()
            rows.append(search.search(q[None], 40)[1][0, :10])
            lat.append(time.perf_counter() - t)
        mark = " (served)" if ivf.nprobe == served else ""
        print(
            f"  nprobe {ivf.nprobe}{mark}: recall@10 {recall(rows, exact):.4f}, search p50 {pct(lat, 0.5)} ms",
            flush=True,
        )
    ivf.nprobe = served
    faiss.omp_set_num_threads(threads)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--windows", type=int, required=True)
    ap.add_argument("--queries", type=int, default=200, help="distinct text queries per concurrency (>= 200)")
    ap.add_argument("--json", action="store_true", help="print one JSON line (concurrency 1) after the report")
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "audiosearch-bench-scale")
    ap.add_argument("--memory-budget", default=None, help="as `audiosearch index --memory-budget`")
    ap.add_argument("--flat-max-windows", type=int, default=None, help="as AUDIOSEARCH_INDEX_FLAT_MAX_WINDOWS")
    ap.add_argument("--nprobe", type=int, nargs="*", help="also sweep these IVF nprobe values in this process")
    args = ap.parse_args()

    from audiosearch.app.settings import load_index_settings
    from audiosearch.indexer.snapshots import FULL_VECTORS
    from audiosearch.indexer.store import SnapshotReader
    from audiosearch.models import load_encoder

    given = {"index_memory": args.memory_budget, "index_flat_max_windows": args.flat_max_windows}
    policy = load_index_settings(**{k: v for k, v in given.items() if v is not None}).policy()
    model = load_encoder("lite")  # also makes sure its text export exists before the service starts
    idx, build_s = library(args.cache, args.windows, model.fingerprint, policy)
    reader = SnapshotReader(idx)
    index_name = reader.manifest["faiss"]
    # exactly what the service scores: vectors.npy beside a compressed index (a RowFile), else the Flat index's own
    vectors = reader.vectors if reader.vectors is not None else reader.vectors_of(np.arange(reader.index.ntotal))
    print(
        f"machine: {machine()}; {args.windows} lite-shaped windows, --faiss auto: {index_name}; "
        f"load average {load_avg()}",
        flush=True,
    )

    qs = {conc: queries(args.queries, seed=200 + conc, block=20 + conc) for conc in (1, 8)}
    qvec = model.encode_text(qs[1])
    blocks = (vectors[i : i + 500_000] for i in range(0, len(vectors), 500_000))  # the file, a block at a time
    exact = knn_ground_truth(qvec, blocks, 10, faiss.METRIC_INNER_PRODUCT)[1] + 1  # file id = window id + 1

    if args.nprobe:
        nprobe_sweep(reader, qvec, exact - 1, args.nprobe)
    # the baseline: one query encoded, then an exact numpy scan of the vectors as a user would map them (fewer
    # queries past 1M: seconds each)
    mapped = np.load(reader.snapshot / FULL_VECTORS, mmap_mode="r") if reader.vectors is not None else vectors
    naive = []
    t_naive = time.perf_counter()
    for q in queries(min(args.queries, max(20, 200_000_000 // args.windows)), seed=300, block=30):
        t = time.perf_counter()
        v = model.encode_text([q])[0]
        s = mapped @ v
        np.argpartition(-s, 10)[:10]
        naive.append(time.perf_counter() - t)
    naive_qps = round(len(naive) / (time.perf_counter() - t_naive), 1)

    port = free_port()
    proc = serve(idx, port)
    try:
        url = f"http://127.0.0.1:{port}"
        asyncio.run(drive(url, queries(16, seed=7, block=2), 4))  # warm up
        rows = []
        for conc in (1, 8):
            got: dict[str, list[int]] = {}
            lat, seconds = asyncio.run(drive(url, qs[conc], conc, {"mode": "audio"}, got))
            row = {"windows": args.windows, "index": index_name, "concurrency": conc,
                   "p50_ms": pct(lat, 0.5), "p99_ms": pct(lat, 0.99), "qps": round(len(lat) / seconds, 1)}  # fmt: skip
            if conc == 1:
                row["recall_at_10"] = round(recall([got[q] for q in qs[1]], exact), 4)
            rows.append(row)
        rss = round(rss_mb(proc.pid), 1)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    reader.close()
    naive_p50 = round(statistics.median(naive) * 1e3, 2)
    for row in rows:
        row.update(rss_mb=rss, build_s=build_s, naive_p50_ms=naive_p50, naive_qps=naive_qps, load_avg=load_avg())
        row["x_naive_qps"] = round(row["qps"] / naive_qps, 2)
        print(
            f"{args.windows:>9} windows, {index_name}, concurrency {row['concurrency']}: p50 {row['p50_ms']} ms, "
            f"p99 {row['p99_ms']} ms, {row['qps']} QPS | naive loop {naive_qps} QPS, p50 {naive_p50} ms | "
            f"x{row['x_naive_qps']} QPS | "
            f"recall@10 {rows[0]['recall_at_10']} | RSS {rss} MB | build {build_s} s | load {row['load_avg']}",
            flush=True,
        )
    print(f"appended to {append_csv('scale', rows)}")
    if args.json:
        one = rows[0]
        keys = ("windows", "index", "recall_at_10", "p50_ms", "p99_ms", "rss_mb", "build_s")
        print(json.dumps({k: one[k] for k in keys}))


if __name__ == "__main__":
    main()
