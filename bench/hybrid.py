"""Query latency of the three search modes against a naive hybrid that scores every file, in one process.

A synthetic library in the real index format: N files of one window each (random unit vectors, 384-d), half of
them with 2-4 words drawn from a 5000-word vocabulary with Zipf frequencies (their text vectors random too), the
other half without words (hashed names). Queries: 2-3 vocabulary words and a random vector. Each mode goes
through `Searcher.search` (k=10): candidates from the audio index, the word vectors and FTS5, the missing signals
computed for the candidates only. The naive peer computes all three signals for every file (FAISS over every
window, every word vector, BM25 over every match) and sorts: the same ranking (checked), no candidate step.
Threads as the service sets them (audiosearch.core.threads.configure_threads: FAISS single-threaded).
Usage: .venv-dev/bin/python -m bench.hybrid [--sizes 10000 100000] [--queries 200]; appends to results/hybrid_query.csv.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from audiosearch.core.threads import configure_threads
from audiosearch.indexer import Searcher
from audiosearch.indexer.store import SnapshotWriter
from audiosearch.indexer.words.extract import FileWords
from bench.common import append_csv, machine, random_unit

DIM, VOCAB = 384, 5000


def build(index_dir: Path, n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    vocab = [f"word{i:04d}x" for i in range(VOCAB)]  # letters around the digits: not an id, a word
    zipf = 1.0 / np.arange(1, VOCAB + 1)
    zipf /= zipf.sum()
    writer = SnapshotWriter(index_dir, DIM, "Flat")
    one = (np.zeros(1), np.full(1, 10.0))
    row = (1, 0, "0" * 40, 10.0, 32000, 1)  # size, mtime_ns, sha1, duration, sample_rate, channels
    writer.add_files([(i + 1, (f"lib/{i:08d}.wav", *row), *one) for i in range(n)])
    writer.add_vectors(random_unit(n, DIM, seed))
    words = []
    for i in range(n):
        picked = rng.choice(vocab, size=rng.integers(2, 5), p=zipf, replace=False) if i % 2 == 0 else []
        words.append((i + 1, FileWords(tuple(picked), ())))
    worded = sum(1 for _, w in words if w.informative)
    writer.add_words(words, random_unit(worded, DIM, seed + 1))
    writer.commit({"library": str(index_dir / "none"), "created": "synthetic",
                   "model": {"name": "lite", "fingerprint": "bench", "dim": DIM, "sample_rate": 0},
                   "window_seconds": 10.0, "hop_seconds": 10.0,
                   "counts": {"files": n, "windows": n, "skipped": 0}})  # fmt: skip
    return vocab


def naive(s: Searcher, q: np.ndarray, text: str, k: int = 10) -> list[int]:
    """Every signal for every file, fused, sorted (one window per file: window id = file id - 1)."""
    from audiosearch.indexer.search.fusion import query_terms

    audio = s.index.search(q[None], s.index.ntotal)
    a = np.empty(s.index.ntotal, np.float32)
    a[audio[1][0]] = audio[0][0]
    t = np.zeros_like(a)
    words = s.reader.words
    wv = words.index.search(q[None], words.index.ntotal)
    t[wv[1][0] - 1] = wv[0][0]
    lex = np.zeros_like(a)
    for fid, (score, _) in words.bm25.rank(query_terms(text)).items():
        lex[fid - 1] = score
    fused = s.fusion.score("hybrid", a, t, lex)
    top = np.argpartition(-fused, k)[:k]
    return [int(i) + 1 for i in top[np.argsort(-fused[top], kind="stable")]]


def timed(fn, items: list) -> list[float]:  # noqa: ANN001
    out = []
    for x in items:
        t = time.perf_counter()
        fn(x)
        out.append((time.perf_counter() - t) * 1e3)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    p.add_argument("--queries", type=int, default=200)
    args = p.parse_args()
    configure_threads()
    rows = []
    for n in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            vocab = build(Path(tmp) / "idx", n)
            build_s = time.perf_counter() - t0
            s = Searcher(Path(tmp) / "idx")
            rng = np.random.default_rng(7)
            texts = [" ".join(rng.choice(vocab[:1000], size=rng.integers(2, 4))) for _ in range(args.queries)]
            vecs = random_unit(args.queries, DIM, 99)
            items = list(zip(vecs, texts, strict=True))
            same = sum(
                [h.file_id for h in s.search(v[None], 10, texts=[t], mode="hybrid")[0].hits] == naive(s, v, t)
                for v, t in items[:20]
            )
            results = {"naive hybrid": timed(lambda x, s=s: naive(s, *x), items)}
            for mode in ("audio", "hybrid", "text"):
                results[mode] = timed(lambda x, m=mode, s=s: s.search(x[0][None], 10, texts=[x[1]], mode=m), items)
            load = os.getloadavg()[0]
            print(f"\n{n} files ({n // 2} with words), build {build_s:.1f} s, load {load:.1f}, {machine()}; "
                  f"hybrid pages equal to the naive ranking: {same}/20")  # fmt: skip
            for label, lat in results.items():
                p50, p99 = statistics.median(lat), float(np.percentile(lat, 99))
                print(f"  {label:13s} p50 {p50:7.2f} ms  p99 {p99:7.2f} ms")
                rows.append({"files": n, "mode": label, "p50_ms": round(p50, 3), "p99_ms": round(p99, 3),
                             "queries": args.queries, "load_avg": round(load, 2), "same_as_naive": same})  # fmt: skip
            ratio = statistics.median(results["naive hybrid"]) / statistics.median(results["hybrid"])
            print(f"  hybrid vs naive: {ratio:.1f}x faster at p50")
            s.close()
    append_csv("hybrid_query", rows)


if __name__ == "__main__":
    main()
