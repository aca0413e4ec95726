"""Uncached text queries over HTTP against a real `audiosearch serve` process vs the naive in-process loop.

Usage: .venv-dev/bin/python -m bench.query [--sizes 1000 100000] [--requests 400] [--concurrency 1 8 32] [--rounds 3]

The service runs as its own process (the CLI, as users start it: lite on the slim runtime, micro-batched
queries); it is driven over loopback at each concurrency, every query a distinct string (no cache hits), by wrk
(a C load generator, `apt install wrk`; bench/wrk/queries.lua) where it is installed, else by an asyncio HTTP
client in this process. On 2 cores the client shares the cores with the service: the Python client costs about
1.3 ms of CPU per request, a third of what the service spends, and at concurrency 32 it becomes the bottleneck.
The baseline is what a user would write first, run in this same process: one transformers MiniLM forward per
query, mean pooling, then a numpy dot product and argsort over the same vectors. With --rounds N the naive loop
and the service's runs alternate N times, each ratio against its own round's naive loop (a shared machine's load
comes and goes), and the median ratio is printed.
A small index makes the run encoding-bound; 100k vectors of lite's 384 dimensions show the Flat scan.
Prints QPS, p50/p99 and the ratio to the baseline; appends to bench/results/query.csv.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from bench.common import CLI, append_csv, cpu_s, load_avg, machine, random_unit, synthetic_index

WORDS = "dog bark rain thunder glass engine bird door crowd water wind footsteps bell siren car music".split()  # noqa: SIM905


# Every query, on both sides: 2-5 of WORDS and a distinct six-digit number (no cache hits), the form of
# bench/wrk/queries.lua, so the service and the naive loop encode token sequences of the same lengths. Each run
# draws its numbers from its own block of 100,000 (`block`), from `start` on: no query repeats one of an earlier run.
def queries(n: int, seed: int = 1, block: int = 9, start: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    words = [" ".join(rng.choice(WORDS, size=rng.integers(2, 6))) for _ in range(n)]
    return [f"{w} {100_000 * block + start + i}" for i, w in enumerate(words)]


def stats(lat: list[float], seconds: float) -> dict:
    s = sorted(lat)
    return {
        "p50_ms": round(statistics.median(s) * 1e3, 2),
        "p99_ms": round(s[int(0.99 * (len(s) - 1))] * 1e3, 2),
        "qps": round(len(s) / seconds, 1),
        "load_avg": load_avg(),
    }


async def drive(
    url: str, qs: list[str], concurrency: int, params: dict | None = None, ids: dict[str, list[int]] | None = None
) -> tuple[list[float], float]:
    """`concurrency` clients, each sending its next query when the previous answer arrived: latencies and the
    seconds of the run. `params` are added to each /search; `ids`, when given, receives each query's file ids
    (parsing the answers only then, so the plain run's client does no more work than before)."""
    lat: list[float] = []
    todo = iter(qs)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:

        async def worker() -> None:
            for q in todo:
                t = time.perf_counter()
                r = await client.get("/search", params={"q": q, "k": 10, **(params or {})})
                r.raise_for_status()
                lat.append(time.perf_counter() - t)
                if ids is not None:
                    ids[q] = [hit["id"] for hit in r.json()["results"]]

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return lat, time.perf_counter() - t0


WRK_SCRIPT = Path(__file__).resolve().parent / "wrk" / "queries.lua"


def drive_wrk(url: str, concurrency: int, seconds: float, block: int, start: int = 0) -> dict:
    """wrk at `concurrency` connections for `seconds`: its RESULT line as numbers."""
    cmd = ["wrk", "-t1", f"-c{concurrency}", f"-d{seconds:g}s", "--latency", "-s", str(WRK_SCRIPT), url]
    env = {**os.environ, "WRK_BLOCK": str(block), "WRK_START": str(start)}
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=True, env=env).stdout
    line = next(x for x in out.splitlines() if x.startswith("RESULT"))
    got = {k: float(v) for k, v in (kv.split("=") for kv in line.split()[1:])}
    if got["errors"] or got["non2xx"]:
        raise RuntimeError(f"wrk saw failed requests: {line}")
    return got


class NaiveLoop:
    """The baseline: transformers MiniLM one query at a time, numpy brute force (loaded once, run each round)."""

    def __init__(self, vectors: np.ndarray) -> None:
        from transformers import AutoModel, AutoTokenizer

        from audiosearch.models.towers.modules.hf_text import minilm_path

        self.vectors, self.tok = vectors, AutoTokenizer.from_pretrained(minilm_path())
        self.enc = AutoModel.from_pretrained(minilm_path()).eval()

    def search(self, q: str) -> np.ndarray:
        import torch

        t = self.tok([q], return_tensors="pt", padding=True)
        with torch.no_grad():
            h = self.enc(**t).last_hidden_state
            v = (h * t["attention_mask"][..., None]).sum(1) / t["attention_mask"].sum(1, keepdim=True)
        v = torch.nn.functional.normalize(v, dim=-1).numpy()[0]
        return np.argsort(-(self.vectors @ v))[:10]

    def run(self, qs: list[str]) -> tuple[list[float], float]:
        for q in qs[:10]:  # warm up
            self.search(q)
        lat = []
        t0 = time.perf_counter()
        for q in qs[10:]:
            t = time.perf_counter()
            self.search(q)
            lat.append(time.perf_counter() - t)
        return lat, time.perf_counter() - t0


def batches(url: str) -> tuple[float, float]:
    """(batches, queries) so far, from the service's /metrics."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    found = dict(re.findall(r"^audiosearch_query_batch_size_(count|sum) (\S+)$", text, re.M))
    return float(found.get("count", 0)), float(found.get("sum", 0))


def serve(
    index: Path, port: int, extra: tuple[str, ...] = (), env: dict | None = None, log: Path | None = None
) -> subprocess.Popen:
    """`audiosearch serve` (plus `extra` arguments, e.g. --ray) on `port`, returned once /readyz says ready.
    `log`: a file for its stderr (a long run's logs would fill a pipe nobody reads)."""
    cmd = [*CLI, "serve", "--index", str(index), "--port", str(port), "--device", "cpu", *extra]
    err = log.open("w") if log else subprocess.PIPE
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, text=True, env=env)
    if log:
        err.close()  # the child holds its own copy
    deadline = time.time() + 300  # a local Ray instance and its shards take a minute to start on a loaded machine
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"serve exited: {(log.read_text() if log else proc.stderr.read())[-2000:]}")
        time.sleep(0.2)
    raise RuntimeError("serve did not become ready")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 100_000])
    ap.add_argument("--requests", type=int, default=400)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--rounds", type=int, default=1, help="naive loop and service runs, alternating")
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument("--client", choices=["auto", "wrk", "python"], default="auto", help="auto: wrk if installed")
    ap.add_argument("--seconds", type=float, default=10.0, help="per concurrency, with wrk")
    args = ap.parse_args()
    client = ("wrk" if shutil.which("wrk") else "python") if args.client == "auto" else args.client

    from audiosearch.models import load_encoder

    model = load_encoder("lite")  # also makes sure its text export exists before the service starts
    print(f"machine: {machine()}; service: lite ({type(model).__name__}), {model.dim}-d; client {client}", flush=True)
    rows = []
    for n in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            vectors = random_unit(n, model.dim)
            idx = synthetic_index(Path(tmp) / "idx", vectors, model.fingerprint, "Flat")
            naive = NaiveLoop(vectors)
            proc = serve(idx, args.port)
            try:
                url = f"http://127.0.0.1:{args.port}"
                asyncio.run(drive(url, queries(16, seed=7, block=2), 4))  # warm up
                for r in range(args.rounds):
                    rows += one_round(url, proc.pid, naive, n, r, args, client)
            finally:
                proc.terminate()
                proc.wait(timeout=30)
            if args.rounds > 1:
                summary(rows, n, args.concurrency)
    print(f"appended to {append_csv('query', [{**r, 'model': 'lite', 'dim': model.dim} for r in rows])}")


def one_round(url: str, pid: int, naive: NaiveLoop, n: int, r: int, args: argparse.Namespace, client: str) -> list:
    """The naive loop, then the service at each concurrency: each ratio against this round's naive loop, so
    load from elsewhere that comes and goes falls on both. Every run's queries are new (no cache hits)."""
    cpu = time.process_time()
    base = stats(*naive.run(queries(10 + args.requests, seed=99 + r, block=1, start=r * 1000)))
    base["cpu_ms"] = round((time.process_time() - cpu) / (args.requests + 10) * 1e3, 2)
    rows = [{"system": "naive loop", "vectors": n, "concurrency": 1, "round": r, **base}]
    for i, conc in enumerate(args.concurrency):
        row = {"system": "audiosearch serve", "client": client, "vectors": n, "concurrency": conc, "round": r}
        row.update(service_run(url, pid, conc, block=3 + i, start=r, args=args, client=client))
        row["x_naive_qps"] = round(row["qps"] / base["qps"], 2)
        rows.append(row)
        print(
            f"{n:>7} vectors, concurrency {conc:>2}: {row['qps']} QPS, p50 {row['p50_ms']} ms, "
            f"p99 {row['p99_ms']} ms | naive loop {base['qps']} QPS, p50 {base['p50_ms']} ms | "
            f"x{row['x_naive_qps']} | mean batch {row['mean_batch']} | CPU ms/query: service {row['cpu_ms']}, "
            f"client {row['client_cpu_ms']}, naive loop {base['cpu_ms']} | load {row['load_avg']}",
            flush=True,
        )
    return rows


def service_run(url: str, pid: int, conc: int, block: int, start: int, args: argparse.Namespace, client: str) -> dict:
    """One run against the service: latencies, QPS, mean batch, and CPU per query of the service and of this
    process (the Python client's share of the 2 cores)."""
    before, cpu = batches(url), (cpu_s(pid), time.process_time())
    if client == "wrk":
        got = drive_wrk(url, conc, args.seconds, block=block, start=start * 20_000)
        timing = {"p50_ms": round(got["p50_ms"], 2), "p99_ms": round(got["p99_ms"], 2),
                  "qps": round(got["requests"] / got["seconds"], 1), "load_avg": load_avg()}  # fmt: skip
        served = got["requests"]
    else:
        timing = stats(*asyncio.run(drive(url, queries(args.requests, 97 + block, block, start * args.requests), conc)))
        served = args.requests
    after = batches(url)
    timing["cpu_ms"] = round((cpu_s(pid) - cpu[0]) / served * 1e3, 2)
    timing["client_cpu_ms"] = round((time.process_time() - cpu[1]) / served * 1e3, 2)
    timing["mean_batch"] = round((after[1] - before[1]) / max(1.0, after[0] - before[0]), 1)
    return timing


def summary(rows: list[dict], n: int, concurrency: list[int]) -> None:
    for conc in concurrency:
        got = [r for r in rows if r["vectors"] == n and r["concurrency"] == conc and r["system"] != "naive loop"]
        ratios = sorted(r["x_naive_qps"] for r in got)
        print(f"{n:>7} vectors, concurrency {conc:>2}: median x{statistics.median(ratios)} over {len(got)} rounds "
              f"({' / '.join(f'x{x}' for x in ratios)})", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
