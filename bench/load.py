"""Bounded load test over loopback with an index hot swap in the middle; reports failures, p99, memory.

Usage: .venv/bin/python -m bench.load [--seconds 60] [--concurrency 32]
Indexes the bundled sample library, serves it in this process (uvicorn thread), sends mixed /search
requests from `concurrency` client threads for `seconds`, rebuilds the index with one file more and
POSTs /admin/reload halfway. Appends to bench/results/load.csv.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

from bench.common import append_csv, machine
from bench.query import queries

TOKEN = "load-test-token-0123456789"


def rss_mb() -> float:
    return float(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize() / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--concurrency", type=int, default=32)
    args = ap.parse_args()
    from app.demo import SAMPLE
    from app.main import create_app
    from app.runtime import configure_threads
    from app.settings import Settings
    from indexer import IndexOptions, build_index
    from models import load_model
    from tests.app.live import live_server

    configure_threads()
    model = load_model("lite")
    with tempfile.TemporaryDirectory() as tmp:
        lib = Path(tmp) / "lib"
        shutil.copytree(SAMPLE, lib)
        extra = next(lib.rglob("*.ogg"))
        held = Path(tmp) / extra.name
        shutil.move(extra, held)  # indexed only after the swap
        idx = Path(tmp) / "idx"
        build_index(lib, idx, model, IndexOptions(workers=0, progress=False))
        app = create_app(Settings(index_dir=idx, admin_token=TOKEN), model=model)
        pool = queries(500)
        lat: list[float] = []
        failures: list[str] = []
        rss: list[float] = []
        stop = threading.Event()

        def client(url: str, seed: int) -> None:
            rng = np.random.default_rng(seed)
            with httpx.Client(base_url=url, timeout=30) as c:
                while not stop.is_set():
                    t = time.perf_counter()
                    try:
                        r = c.get("/search", params={"q": pool[rng.integers(len(pool))], "k": 10})
                        if r.status_code != 200:
                            failures.append(f"{r.status_code} {r.text[:80]}")
                    except httpx.HTTPError as err:
                        failures.append(repr(err))
                    lat.append(time.perf_counter() - t)

        with live_server(app) as url:
            threads = [threading.Thread(target=client, args=(url, i)) for i in range(args.concurrency)]
            t0 = time.perf_counter()
            for t in threads:
                t.start()
            swapped = False
            while time.perf_counter() - t0 < args.seconds:
                rss.append(rss_mb())
                if not swapped and time.perf_counter() - t0 > args.seconds / 2:
                    shutil.move(held, extra)
                    build_index(lib, idx, model, IndexOptions(workers=0, progress=False))
                    r = httpx.post(f"{url}/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)
                    swapped = r.status_code == 200 and r.json()["files"] == 41
                time.sleep(1)
            stop.set()
            for t in threads:
                t.join()
            wall = time.perf_counter() - t0
    s = sorted(lat)
    row = {"seconds": round(wall, 1), "concurrency": args.concurrency, "requests": len(lat),
           "failed": len(failures), "swapped": swapped, "p50_ms": round(s[len(s) // 2] * 1e3, 1),
           "p99_ms": round(s[int(0.99 * (len(s) - 1))] * 1e3, 1), "qps": round(len(lat) / wall, 1),
           "rss_start_mb": round(rss[0]), "rss_end_mb": round(rss[-1]), "rss_max_mb": round(max(rss))}
    print(f"machine: {machine()}")
    print(", ".join(f"{k} {v}" for k, v in row.items()))
    if failures:
        print("first failures:", failures[:3])
    append_csv("load", [row])


if __name__ == "__main__":
    main()
