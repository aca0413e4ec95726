"""End-to-end /search latency over loopback vs a naive peer (eager transformers + numpy brute force).

Usage: .venv/bin/python bench/query.py [--sizes 10000 100000 1000000] [--requests 200]
Prints p50/p99 latency and QPS at concurrency 1 and 8 for each index size, the naive peer's figures on the
same vectors in the same process, and the ratios; appends to bench/results/query.csv.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import torch

from bench.common import append_csv, machine, random_unit, synthetic_index

WORDS = "dog bark rain thunder glass engine bird door crowd water wind footsteps bell siren car music".split()  # noqa: SIM905


def queries(n: int, seed: int = 1) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=rng.integers(2, 6))) + f" {i}" for i in range(n)]


def timed(fn, items: list, concurrency: int) -> tuple[list[float], float]:
    lat: list[float] = []
    lock = threading.Lock()

    def one(x) -> None:
        t = time.perf_counter()
        fn(x)
        with lock:
            lat.append(time.perf_counter() - t)

    t0 = time.perf_counter()
    if concurrency == 1:
        for x in items:
            one(x)
    else:
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(one, items))
    return lat, len(items) / (time.perf_counter() - t0)


def stats(lat: list[float], qps: float) -> dict:
    s = sorted(lat)
    # The load average goes with each figure: the development machine is shared, so others' work shows in it.
    return {
        "p50_ms": round(statistics.median(s) * 1e3, 2),
        "p99_ms": round(s[int(0.99 * (len(s) - 1))] * 1e3, 2),
        "qps": round(qps, 1),
        "load_avg": "/".join(f"{x:.1f}" for x in os.getloadavg()),
    }


def naive_peer(vectors: np.ndarray):
    """What a user would write: transformers MiniLM, mean pooling, numpy dot product and argsort."""
    from transformers import AutoModel, AutoTokenizer

    from models.encoders.hf_text import minilm_path

    tok = AutoTokenizer.from_pretrained(minilm_path())
    enc = AutoModel.from_pretrained(minilm_path())
    proj = torch.nn.Linear(384, vectors.shape[1])

    def search(q: str) -> np.ndarray:
        t = tok([q], return_tensors="pt", padding=True)
        with torch.no_grad():
            h = enc(**t).last_hidden_state
            v = proj((h * t["attention_mask"][..., None]).sum(1) / t["attention_mask"].sum(1, keepdim=True))
        v = torch.nn.functional.normalize(v, dim=-1).numpy()[0]
        return np.argsort(-(vectors @ v))[:10]

    return search


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--onnx", action="store_true", help="serve queries through an ONNX export of the text tower")
    ap.add_argument("--faiss", nargs="+", default=["Flat"], help="FAISS factories to serve, e.g. Flat HNSW32")
    ap.add_argument("--model", default="lite", help="model whose text tower answers (its dim sizes the vectors)")
    args = ap.parse_args()

    from app.main import create_app
    from app.settings import Settings
    from models import load_model
    from tests.app.live import live_server

    model = load_model(args.model)
    print(f"machine: {machine()}; torch {torch.__version__}")
    rows = []
    onnx_tmp = tempfile.TemporaryDirectory()
    onnx_dir = None
    if args.onnx:
        from models.onnx_export import export_text_onnx

        onnx_dir = export_text_onnx(model, Path(onnx_tmp.name) / "onnx")
    tag = {"model": args.model, "dim": model.config.embed_dim}  # last columns: older rows lack them
    for n in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            vectors = random_unit(n, model.config.embed_dim)
            qs = queries(args.requests)
            for factory in args.faiss:
                t = time.perf_counter()
                idx = synthetic_index(Path(tmp) / factory.replace(",", "_"), vectors, model.fingerprint, factory)
                print(f"{n} vectors: {factory} index built in {time.perf_counter() - t:.0f} s", flush=True)
                app = create_app(Settings(index_dir=idx, onnx_dir=onnx_dir), model=model)
                with live_server(app) as url, httpx.Client(base_url=url, timeout=60) as client:
                    client.get("/search", params={"q": "warm up"})
                    for conc in (1, 8):
                        lat, qps = timed(lambda q: client.get("/search", params={"q": q}).raise_for_status(), qs, conc)
                        rows.append(
                            {"system": f"audiosearch {factory}", "vectors": n, "concurrency": conc, **stats(lat, qps)}
                            | tag
                        )
            peer = naive_peer(vectors)
            peer("warm up")
            for conc in (1, 8):
                lat, qps = timed(peer, qs[: max(20, args.requests // 4)], conc)
                rows.append({"system": "naive", "vectors": n, "concurrency": conc, **stats(lat, qps)} | tag)
        naive = {r["concurrency"]: r for r in rows if r["system"] == "naive" and r["vectors"] == n}
        for o in [r for r in rows if r["system"] != "naive" and r["vectors"] == n]:
            r = naive[o["concurrency"]]
            print(
                f"{n:>9} vectors, concurrency {o['concurrency']}: {o['system']} p50 {o['p50_ms']} ms "
                f"p99 {o['p99_ms']} ms {o['qps']} QPS | naive p50 {r['p50_ms']} ms {r['qps']} QPS | "
                f"QPS x{o['qps'] / r['qps']:.1f}, p50 x{r['p50_ms'] / o['p50_ms']:.1f} faster | "
                f"load {o['load_avg']}",
                flush=True,
            )
    print(f"appended to {append_csv('query', rows)}")


if __name__ == "__main__":
    main()
