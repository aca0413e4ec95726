"""Indexer throughput on real audio vs the bare model forward (ceiling) and a naive per-file loop.

Usage: .venv/bin/python -m bench.index [--clips 200] [--workers 1]
Uses ESC-10 clips from ../shared/data (or $AUDIOSEARCH_DATA). Peak RSS is measured in child processes
for two library sizes, to show memory does not grow with the library. Appends to bench/results/index.csv.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import append_csv, machine


def library(n: int, dest: Path) -> Path:
    from tests.conftest import shared_data_dir

    clips = sorted((shared_data_dir() / "esc10").glob("*/*.ogg"))
    if not clips:
        sys.exit("no ESC-10 clips found: set AUDIOSEARCH_DATA or provide ../shared/data")
    for i in range(n):  # beyond 400 clips, copies under new names (each still decoded and embedded)
        src = clips[i % len(clips)]
        out = dest / f"{i // len(clips)}" / src.parent.name / src.name
        out.parent.mkdir(parents=True, exist_ok=True)
        if i < len(clips):
            shutil.copy(src, out)
        else:  # a changed byte makes a new content hash, so the cache cannot dedupe it
            out.write_bytes(src.read_bytes() + bytes([i % 251]))
    return dest


def bare_forward(model, waves: np.ndarray, lengths: np.ndarray, batch: int) -> float:
    t = time.perf_counter()
    model.encode_audio(waves, model.sample_rate, lengths, batch)
    return len(waves) / (time.perf_counter() - t)


def naive_loop(model, files: list[Path]) -> float:
    """What a user would write: load each file, embed it alone."""
    import librosa

    t = time.perf_counter()
    for f in files:
        wave, _ = librosa.load(f, sr=model.sample_rate)
        model.encode_audio(wave[None], model.sample_rate)
    return len(files) / (time.perf_counter() - t)


def peak_rss_of_index_run(lib: Path, workers: int) -> tuple[float, float]:
    code = (
        "import json, resource, sys; from app.runtime import configure_threads; configure_threads();"
        "from indexer import IndexOptions, build_index; from models import load_model;"
        f"r = build_index({str(lib)!r}, {str(lib) + '-idx'!r}, load_model('lite'),"
        f" IndexOptions(workers={workers}, progress=False));"
        "kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss;"
        "print(json.dumps({'cps': r.clips_per_second, 'rss': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,"
        " 'kids': kids}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    res = json.loads(out.stdout.strip().splitlines()[-1])
    return res["cps"], max(res["rss"], res["kids"]) / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=200)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=32)
    args = ap.parse_args()
    from app.runtime import configure_threads
    from models import cut_windows, load_audio, load_model

    configure_threads()
    model = load_model("lite")
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        small = library(args.clips, Path(tmp) / "small")
        files = sorted(small.rglob("*.ogg"))
        wins = [cut_windows(load_audio(f, model.sample_rate), model.sample_rate) for f in files]
        waves, lengths = np.concatenate([w.waves for w in wins]), np.concatenate([w.lengths for w in wins])
        bare_forward(model, waves[:8], lengths[:8], args.batch_size)  # warm-up
        ceiling = bare_forward(model, waves, lengths, args.batch_size)
        naive = naive_loop(model, files[: max(20, len(files) // 4)])
        ours, rss_small = peak_rss_of_index_run(small, args.workers)
        large = library(args.clips * 3, Path(tmp) / "large")
        ours_large, rss_large = peak_rss_of_index_run(large, args.workers)
    print(f"bare forward {ceiling:.1f} clips/s | naive loop {naive:.1f} clips/s | indexer {ours:.1f} clips/s")
    print(f"indexer / ceiling = {ours / ceiling:.2f}, indexer / naive = {ours / naive:.2f}")
    print(f"peak RSS: {args.clips} clips {rss_small:.0f} MB, {args.clips * 3} clips {rss_large:.0f} MB "
          f"({ours_large:.1f} clips/s)")
    append_csv("index", [{"clips": args.clips, "workers": args.workers, "ceiling_cps": round(ceiling, 2),
                          "naive_cps": round(naive, 2), "indexer_cps": round(ours, 2),
                          "rss_mb_small": round(rss_small), "rss_mb_large": round(rss_large)}])


if __name__ == "__main__":
    main()
