"""Indexer throughput on real audio vs the bare model forward (ceiling) and a naive per-file loop.

Usage: .venv-dev/bin/python -m bench.index [--clips 200] [--workers 2] [--clip-seconds 5|10]
       [--model lite | --paper-random]
       [--device cpu|cuda] [--batch-size 32] [--wav]
Uses ESC-10 clips from ../shared/data (or $AUDIOSEARCH_DATA): as they are (5 s, 44.1 kHz Ogg), or joined in
pairs into 10 s Ogg files. `--paper-random` measures the paper's PaSST-S tower with random weights (the
hub weights are not needed to time it). Peak RSS is measured in child processes
for two library sizes, to show memory does not grow with the library. Appends to bench/results/index.csv.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import append_csv, machine, paper_random_config


def library(n: int, dest: Path, clip_seconds: int = 5, wav_rate: int = 0) -> Path:
    """n files from ESC-10: the 5 s, 44.1 kHz Ogg clips as they are, or joined in pairs into 10 s Ogg files;
    with `wav_rate`, 16-bit WAV at that rate instead (decoding then costs next to nothing)."""
    from tests.conftest import shared_data_dir

    clips = sorted((shared_data_dir() / "esc10").glob("*/*.ogg"))
    if not clips:
        sys.exit("no ESC-10 clips found: set AUDIOSEARCH_DATA or provide ../shared/data")
    unique = min(n, len(clips))
    rewrite = clip_seconds == 10 or wav_rate
    sources = [
        _rewritten(clips, i, dest / "src", clip_seconds, wav_rate) if rewrite else clips[i] for i in range(unique)
    ]
    for i in range(n):  # beyond the unique clips, copies under new names (each still decoded and embedded)
        src = sources[i % unique]
        out = dest / f"{i // unique}" / src.parent.name / src.name
        out.parent.mkdir(parents=True, exist_ok=True)
        # a changed trailing byte makes a new content hash, so the cache cannot dedupe the copies
        out.write_bytes(src.read_bytes() + (bytes([i % 251]) if i >= unique else b""))
    shutil.rmtree(dest / "src", ignore_errors=True)
    return dest


def _rewritten(clips: list[Path], i: int, dest: Path, clip_seconds: int, wav_rate: int) -> Path:
    """Clip i (joined with the next one of its class for 10 s) as Ogg Vorbis at 44.1 kHz or WAV at wav_rate."""
    import soundfile as sf

    from audiosearch.models.audio import resample

    first, second = clips[i], clips[(i + 1) % len(clips)]
    parts = [first, second] if clip_seconds == 10 else [first]
    wave = np.concatenate([sf.read(p, dtype="float32")[0] for p in parts])
    out = dest / first.parent.name / f"joined_{first.stem}.{'wav' if wav_rate else 'ogg'}"
    out.parent.mkdir(parents=True, exist_ok=True)
    if wav_rate:
        sf.write(out, resample(wave, 44100, wav_rate), wav_rate, subtype="PCM_16")
        return out
    with sf.SoundFile(out, "w", 44100, 1, format="OGG", subtype="VORBIS") as f:
        for at in range(0, len(wave), 16384):  # libsndfile's Vorbis writer crashes on large single writes
            f.write(wave[at : at + 16384])
    return out


def bare_forward(model, waves: np.ndarray, lengths: np.ndarray, batch: int) -> float:
    t = time.perf_counter()
    model.encode_audio(waves, model.sample_rate, lengths, batch)
    return len(waves) / (time.perf_counter() - t)


def naive_loop(model, files: list[Path]) -> float:
    """What a user would write: load each file, embed it alone."""
    import librosa

    librosa.load(files[0], sr=model.sample_rate)  # warm-up: imports and resampler set-up are not per-file costs
    t = time.perf_counter()
    for f in files:
        wave, _ = librosa.load(f, sr=model.sample_rate)
        model.encode_audio(wave[None], model.sample_rate)
    return len(files) / (time.perf_counter() - t)


def peak_rss_of_index_run(
    lib: Path, workers: int, model: str, device: str = "cpu", batch_size: int = 32
) -> tuple[float, float]:
    code = (
        "import json, resource, sys; from audiosearch.core.threads import configure_threads; configure_threads();"
        "from audiosearch.indexer import IndexOptions, build_index; from audiosearch.models import load_model;"
        f"r = build_index({str(lib)!r}, {str(lib) + '-idx'!r}, load_model({model!r}, {device!r}),"
        f" IndexOptions(workers={workers}, batch_size={batch_size}, progress=False));"
        "kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss;"
        "print(json.dumps({'cps': r.clips_per_second, 'rss': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,"
        " 'kids': kids}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1]
    )
    if out.returncode:
        sys.exit(f"index run failed: {out.stderr.strip().splitlines()[-1:]}")
    res = json.loads(out.stdout.strip().splitlines()[-1])
    return res["cps"], max(res["rss"], res["kids"]) / 1024


def paper_random(dest: Path) -> str:
    """The paper's PaSST-S audio tower with random weights, saved where the child runs can load it."""
    from audiosearch.models import DualEncoder, save_model

    return str(save_model(DualEncoder(paper_random_config()), dest))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=200)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--clip-seconds", type=int, choices=[5, 10], default=5)
    ap.add_argument("--model", default="lite", help="profile name or model directory")
    ap.add_argument("--paper-random", action="store_true", help="time PaSST-S with random weights")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (fp16 autocast)")
    ap.add_argument("--wav", action="store_true", help="16-bit WAV at the model's rate instead of Ogg")
    args = ap.parse_args()
    from audiosearch.core.threads import configure_threads
    from audiosearch.models import cut_windows, load_audio, load_model

    configure_threads()
    print(f"machine: {machine()}; load average before: {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        spec = paper_random(Path(tmp) / "paper-random") if args.paper_random else args.model
        model = load_model(spec, args.device)
        wav_rate = model.sample_rate if args.wav else 0
        small = library(args.clips, Path(tmp) / "small", args.clip_seconds, wav_rate)
        files = sorted(p for p in small.rglob("*") if p.is_file())
        wins = [cut_windows(load_audio(f, model.sample_rate), model.sample_rate) for f in files]
        waves, lengths = np.concatenate([w.waves for w in wins]), np.concatenate([w.lengths for w in wins])
        bare_forward(model, waves[:8], lengths[:8], args.batch_size)  # warm-up
        ceiling = bare_forward(model, waves, lengths, args.batch_size)
        naive = naive_loop(model, files[: max(20, len(files) // 4)])
        ours, rss_small = peak_rss_of_index_run(small, args.workers, spec, args.device, args.batch_size)
        large = library(args.clips * 3, Path(tmp) / "large", args.clip_seconds, wav_rate)
        ours_large, rss_large = peak_rss_of_index_run(large, args.workers, spec, args.device, args.batch_size)
    name = "paper-random" if args.paper_random else args.model
    print(f"model {name}, {args.clip_seconds} s {'WAV' if args.wav else 'Ogg'} clips, {len(waves)} windows")
    print(f"bare forward {ceiling:.1f} clips/s | naive loop {naive:.1f} clips/s | indexer {ours:.1f} clips/s")
    print(f"indexer / ceiling = {ours / ceiling:.2f}, indexer / naive = {ours / naive:.2f}")
    print(
        f"peak RSS: {args.clips} clips {rss_small:.0f} MB, {args.clips * 3} clips {rss_large:.0f} MB "
        f"({ours_large:.1f} clips/s); load average after: {os.getloadavg()[0]:.2f}"
    )
    append_csv(
        "index",
        [
            {
                "model": name,
                "clip_seconds": args.clip_seconds,
                "format": "wav" if args.wav else "ogg",
                "clips": args.clips,
                "workers": args.workers,
                "device": args.device,
                "batch_size": args.batch_size,
                "ceiling_cps": round(ceiling, 2),
                "naive_cps": round(naive, 2),
                "indexer_cps": round(ours, 2),
                "indexer_large_cps": round(ours_large, 2),
                "rss_mb_small": round(rss_small),
                "rss_mb_large": round(rss_large),
                "load_avg": round(os.getloadavg()[0], 2),
            }
        ],
    )


if __name__ == "__main__":
    main()
