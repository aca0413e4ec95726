"""`audiosearch serve` against `audiosearch serve --ray --replicas R --shards S` on this machine: QPS, p50/p99,
the RSS of the ingress and of each shard actor, and the CPU each part of the service spends on a request.

Usage: .venv/bin/python -m bench.ray_serve --windows 100000 [--json] [--queries 320] [--replicas 1 2]
                                           [--shards 1 2 4] [--no-profile] [--cache DIR] [--flat-max-windows N]

One library of N lite-shaped windows (bench.scale.library: bench.faiss.lite_like, one window per file, the index
`--faiss auto` picks: Flat up to 250k windows or --flat-max-windows), served by the single process (the baseline:
first, and again last so that a change of the machine's load during the run shows), and by each Ray
configuration between them, each a fresh `audiosearch serve` process (with --ray: its own local Ray instance on
this machine's cores) on a free loopback port. Every configuration gets the same distinct text queries
(bench.query.queries; mode=audio as bench.scale: the synthetic library has no words), so none is a cache hit:
at concurrency 8, then 1, from bench.query.drive (a Python asyncio client in this process).
Per configuration: QPS and p50/p99 and their ratio to the single process's (the mean of its two runs) at the
same concurrency; the mean batch of the query batcher; the CPU ms per request of each role (the serve process,
ingress replicas, shard actors, Ray's own processes, the client), from /proc, and what it implies on dedicated
cores (capacity = cores x 1000 / the service's CPU ms per request: on a shared machine a process tree with more
threads also takes more of the other jobs' share, so QPS alone flatters the Ray runs); the RSS of every process
after the runs. Then bench.ray_profile times the pieces of a request in this process (--no-profile skips it).
Threads are set on purpose (THREADS). Appends to bench/results/ray_serve.csv (and ray_serve_profile.csv);
--json prints one line {"windows", "index", "single_qps", "configs": [...]} (concurrency 8).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import append_csv, cpu_s, free_port, load_avg, machine, pct, rss_mb
from bench.query import batches, drive, queries, serve
from bench.ray_profile import cpu_by_role, profile, roles
from bench.scale import library

# Every process of a run: one thread for BLAS/OpenMP pools, AUDIOSEARCH_THREADS for the service's own pools
# (the encoder, the Flat scan's parts) = this machine's cores; no Ray usage report (nothing leaves the machine).
THREADS = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "AUDIOSEARCH_THREADS": str(os.cpu_count() or 1),
    "RAY_USAGE_STATS_ENABLED": "0",
}
os.environ.update(THREADS)  # before numpy's and FAISS's pools exist in this process (the profile's side)
MODE = {"mode": "audio"}
SERVICE = ("controller", "ingress", "shard", "ray")  # the roles whose CPU is the service's (not the client's)


def memory(procs: dict[int, str], replicas: int | None) -> dict[str, str | float]:
    """RSS in MB: the ingress (each replica; also without the mapped file pages: anon), each shard actor, and
    Ray's own processes together."""
    rss = {pid: rss_mb(pid) for pid in procs}
    ingress = "ingress" if (replicas or 1) > 1 else "controller"
    of = {r: [round(rss[p]) for p in sorted(procs) if procs[p] == r] for r in ("controller", "ingress", "shard")}
    anon = [round(rss_mb(p, "RssAnon")) for p in sorted(procs) if procs[p] == ingress]
    return {
        "ingress_rss_mb": "/".join(map(str, of[ingress])),
        "ingress_anon_mb": "/".join(map(str, anon)),
        "controller_rss_mb": "/".join(map(str, of["controller"])) if ingress == "ingress" else "",
        "shard_rss_mb": "/".join(map(str, of["shard"])),
        "ray_rss_mb": round(sum(v for p, v in rss.items() if procs[p] == "ray")),
    }


def measure(index: Path, extra: tuple[str, ...], replicas: int | None, qs: dict[int, list[str]], log: Path) -> list:
    """One configuration: serve it, warm up, drive each concurrency; one row per concurrency."""
    port = free_port()
    env = {**os.environ, **THREADS}
    env.pop("RAY_ADDRESS", None)  # always a local instance of its own
    t = time.perf_counter()
    proc = serve(index, port, extra, env=env, log=log)
    start_s = round(time.perf_counter() - t, 1)
    url, rows = f"http://127.0.0.1:{port}", []
    try:
        asyncio.run(drive(url, queries(16, seed=7, block=2), 4, MODE))  # warm up: other strings than measured
        for conc, todo in qs.items():
            procs = {**roles(proc.pid), os.getpid(): "client"}
            before, counted = {p: cpu_s(p) for p in procs}, batches(url)
            lat, seconds = asyncio.run(drive(url, todo, conc, MODE))
            counted = [b - a for a, b in zip(counted, batches(url), strict=True)]
            cpu = cpu_by_role(procs, before, len(lat))
            service_ms = sum(v for r, v in cpu.items() if r in SERVICE)
            timing = {"qps": round(len(lat) / seconds, 1), "p50_ms": pct(lat, 0.5), "p99_ms": pct(lat, 0.99)}
            # mean batch: with several replicas each /metrics is one replica's, two readings maybe not the same one
            timing |= {
                "cpu_ms_per_req": json.dumps(cpu),
                "service_cpu_ms": round(service_ms, 2),
                "mean_batch": round(counted[1] / max(1.0, counted[0]), 1) if (replicas or 1) == 1 else "",
            }
            rows.append({"concurrency": conc, **timing, "load_avg": load_avg(), "start_s": start_s})
        mem = memory(roles(proc.pid), replicas)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    return [{**r, **mem} for r in rows]


def configure(row: dict, replicas: int | None, shards: int | None, n: int, kind: str) -> dict:
    return {
        "system": "audiosearch serve" + (" --ray" if replicas else ""),
        "replicas": replicas or "",
        "shards": shards or "",
        "windows": n,
        "index": kind,
        **row,
        "capacity_qps": round(1000 * (os.cpu_count() or 1) / row["service_cpu_ms"], 1),
        "shard_data_mb": shard_data_mb(n, shards) if shards else "",
        **THREADS,
    }


def shard_data_mb(windows: int, shards: int, dim: int = 384) -> str:
    """What each shard holds by design: its rows of the float32 vectors."""
    rows = [windows * (i + 1) // shards - windows * i // shards for i in range(shards)]
    return "/".join(f"{r * dim * 4 / 2**20:.0f}" for r in rows)


def ratios(rows: list[dict]) -> None:
    """Each row's QPS and capacity over the single process's (the mean of its runs) at the same concurrency."""
    for row in rows:
        base = [r for r in rows if r["replicas"] == "" and r["concurrency"] == row["concurrency"]]
        row["x_single_qps"] = round(row["qps"] / np.mean([r["qps"] for r in base]), 2)
        row["x_single_capacity"] = round(row["capacity_qps"] / np.mean([r["capacity_qps"] for r in base]), 2)


def report(row: dict) -> None:
    who = "single process" if row["replicas"] == "" else f"{row['replicas']} replica(s), {row['shards']} shard(s)"
    print(
        f"{who:>24}, conc {row['concurrency']}: {row['qps']:>5} QPS x{row['x_single_qps']}, p50 {row['p50_ms']} ms, "
        f"p99 {row['p99_ms']} ms, mean batch {row['mean_batch']} | CPU ms/req {row['cpu_ms_per_req']}: "
        f"capacity {row['capacity_qps']} QPS x{row['x_single_capacity']} | RSS MB ingress {row['ingress_rss_mb']} "
        f"(anon {row['ingress_anon_mb']}), "
        f"shards {row['shard_rss_mb'] or '-'} (vectors {row['shard_data_mb'] or '-'}), ray {row['ray_rss_mb']} | "
        f"start {row['start_s']} s | load {row['load_avg']}",
        flush=True,
    )


def run_all(index: Path, kind: str, args: argparse.Namespace) -> list[dict]:
    qs = {8: queries(args.queries, seed=40, block=40), 1: queries(max(8, args.queries // 4), seed=41, block=41)}
    runs = [(None, None), *((r, s) for r in args.replicas for s in args.shards), (None, None)]
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as logs:
        for i, (replicas, shards) in enumerate(runs):
            ray = () if replicas is None else ("--ray", "--replicas", str(replicas), "--shards", str(shards))
            for row in measure(index, ray, replicas, qs, Path(logs) / f"serve-{i}.log"):
                rows.append(configure(row, replicas, shards, args.windows, kind))
                print(f"  ran {replicas or '-'} replica(s) {shards or '-'} shard(s), conc {row['concurrency']}: "
                      f"{row['qps']} QPS, load {row['load_avg']}", flush=True)  # fmt: skip
    ratios(rows)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--windows", type=int, required=True)
    ap.add_argument("--queries", type=int, default=320, help="distinct queries at concurrency 8 (a quarter at 1)")
    ap.add_argument("--replicas", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--shards", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--flat-max-windows", type=int, default=None, help="as AUDIOSEARCH_INDEX_FLAT_MAX_WINDOWS")
    ap.add_argument("--no-profile", action="store_true", help="skip timing the pieces in this process")
    ap.add_argument("--json", action="store_true", help="print one JSON line (concurrency 8) after the report")
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "audiosearch-bench-scale")
    args = ap.parse_args()

    from audiosearch.indexer.faiss_index import IndexPolicy
    from audiosearch.indexer.snapshots import read_manifest, require_snapshot
    from audiosearch.models import load_encoder

    model = load_encoder("lite")  # also makes sure its text export exists before the services start
    policy = IndexPolicy(**({"flat_max_windows": args.flat_max_windows} if args.flat_max_windows else {}))
    index, _ = library(args.cache, args.windows, model.fingerprint, policy)
    kind = read_manifest(require_snapshot(index))["faiss"]
    print(f"machine: {machine()}; {args.windows} lite-shaped windows ({kind}); {THREADS}; load {load_avg()}")
    rows = run_all(index, kind, args)
    for row in rows:
        report(row)
    verdict(rows)
    print(f"appended to {append_csv('ray_serve', rows)}")
    if not args.no_profile:
        steps = profile(index, model)
        print(f"appended to {append_csv('ray_serve_profile', [{**s, 'windows': args.windows} for s in steps])}")
    if args.json:
        keys = ("replicas", "shards", "qps", "x_single_qps", "x_single_capacity", "ingress_rss_mb", "shard_rss_mb")
        eight = [r for r in rows if r["concurrency"] == 8]
        configs = [{k: r[k] for k in keys} for r in eight if r["replicas"] != ""]
        single = round(float(np.mean([r["qps"] for r in eight if r["replicas"] == ""])), 1)
        print(json.dumps({"windows": args.windows, "index": kind, "single_qps": single, "configs": configs}))


def verdict(rows: list[dict]) -> None:
    got = next((r for r in rows if (r["replicas"], r["shards"], r["concurrency"]) == (1, 2, 8)), None)
    if got:
        met = "met" if got["x_single_qps"] >= 0.5 else "NOT met"
        print(
            f"target >= 0.5x the single process's QPS at 1 replica, 2 shards, concurrency 8: x{got['x_single_qps']} "
            f"({met}); on dedicated cores (CPU per request) x{got['x_single_capacity']}"
        )


if __name__ == "__main__":
    main()
