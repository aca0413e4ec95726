"""Readiness and idle memory of `audiosearch serve` (the slim runtime) against the same service with torch loaded.

Usage: python -m bench.footprint [--index DIR] [--runs 5] [--no-baseline] [--where 'slim image']
Each run starts `audiosearch serve` in a fresh process on a free loopback port, times the start to the first
/readyz 200, sends three searches, waits two seconds and reads the process's RSS (/proc/PID/status) and
whether any torch library is mapped into it (/proc/PID/maps). The naive baseline is the same command with
torch and transformers imported first, i.e. the service as it was before the slim runtime. Without --index
the bundled demo is indexed into a temporary folder first. Runs also inside the image (no torch there, so no
baseline): README, Docker. Appends to bench/results/footprint.csv with the load average.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from bench.common import CLI, append_csv, free_port, machine, rss_mb

QUERIES = ("dog barking", "rain falling", "a rooster crowing")
BASELINE = (
    "import sys, torch, transformers; from audiosearch.app.cli import main; "
    "sys.argv[0] = 'audiosearch'; sys.exit(main())"
)


def one_run(prefix: list[str], index: Path, log: Path) -> dict:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    t0 = time.perf_counter()
    with log.open("w") as err:
        proc = subprocess.Popen([*prefix, "serve", "--index", str(index), "--port", str(port)], stdout=err, stderr=err)
    try:
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"serve exited {proc.returncode}: {log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{base}/readyz", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.02)
        ready = time.perf_counter() - t0
        ready_rss = rss_mb(proc.pid)
        for q in QUERIES:
            with urllib.request.urlopen(f"{base}/search?k=10&q=" + q.replace(" ", "+"), timeout=30) as r:
                r.read()
        time.sleep(2)
        maps = Path(f"/proc/{proc.pid}/maps").read_text()
        return {
            "ready_s": ready,
            "rss_ready_mb": ready_rss,
            "rss_idle_mb": rss_mb(proc.pid),
            "torch_mapped": "libtorch" in maps,
        }
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--index", type=Path, default=None, help="a built lite index (default: the demo, built here)")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--no-baseline", action="store_true", help="skip the torch baseline (e.g. in the slim image)")
    ap.add_argument("--where", default="host venv", help="recorded with the results, e.g. 'slim image'")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        index = args.index
        if index is None:
            index = Path(tmp) / "demo-index"
            cmd = [*CLI, "demo", "--no-serve", "--index", str(index)]
            subprocess.run(cmd, check=True, capture_output=True, text=True)
        variants = {"slim": CLI}
        if not args.no_baseline:
            variants["torch loaded"] = [sys.executable, "-c", BASELINE]
        load = os.getloadavg()[0]
        results: dict[str, list[dict]] = {name: [] for name in variants}
        for _ in range(args.runs):  # alternate, so both see the same machine
            for name, prefix in variants.items():
                results[name].append(one_run(prefix, index, Path(tmp) / "serve.log"))
    load = max(load, os.getloadavg()[0])
    print(f"machine: {machine()}, {args.where}, load average (1 min) up to {load:.1f}, {args.runs} runs each")
    rows = []
    for name, runs in results.items():
        row = {
            "variant": name,
            "where": args.where,
            "runs": len(runs),
            "load_avg": round(load, 1),
            "torch_mapped": any(r["torch_mapped"] for r in runs),
        }
        for key in ("ready_s", "rss_ready_mb", "rss_idle_mb"):
            values = [r[key] for r in runs]
            row[f"{key}_median"] = round(statistics.median(values), 2)
            row[f"{key}_max"] = round(max(values), 2)
        rows.append(row)
        print(
            f"{name}: ready in {row['ready_s_median']} s (median, max {row['ready_s_max']}), "
            f"idle RSS {row['rss_idle_mb_median']:.0f} MB (max {row['rss_idle_mb_max']:.0f}), "
            f"torch mapped: {row['torch_mapped']}"
        )
    if len(rows) == 2:
        slim, naive = rows
        print(
            f"slim / torch loaded: readiness x{naive['ready_s_median'] / slim['ready_s_median']:.1f} faster, "
            f"idle RSS x{naive['rss_idle_mb_median'] / slim['rss_idle_mb_median']:.1f} smaller"
        )
    append_csv("footprint", rows)


if __name__ == "__main__":
    main()
