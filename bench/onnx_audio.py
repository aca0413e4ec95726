"""Audio tower + projection: torch vs an onnxruntime export, clips/s at batch 1 and 16, in one process.

Usage: .venv-dev/bin/python -m bench.onnx_audio [--models aisfx paper] [--clips 16] [--rounds 3]
`aisfx` is the shipped aisfx model; `paper` is the paper profile's PaSST-S (full size, randomly initialised:
no model hub here; speed does not depend on the weights) with the offline MiniLM text tower, which the audio side never
touches. Real ESC-10 clips (5 s) from ../shared/data (or $AUDIOSEARCH_DATA), at the tower's rate; PaSST rows
are zero-padded to its 10 s input as the indexer's windows are. Torch and onnxruntime rounds alternate, so
load from other processes on a shared machine falls on both. Appends to bench/results/onnx_audio.csv.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench.common import append_csv, load_avg, machine, paper_random_config

PAYS = 1.2  # speed-up from which the export is worth wiring in


def build(name: str):
    from audiosearch.models import load_model

    if name != "paper":
        return load_model(name)
    from audiosearch.models.checkpoint import fingerprint
    from audiosearch.models.dual_encoder import DualEncoder

    config = paper_random_config()
    model = DualEncoder(config)
    model.fingerprint = fingerprint(None, config)
    return model


def clips(n: int, sample_rate: int, width: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(n, width) zero-padded real clips and their lengths; width None: the longest clip."""
    from audiosearch.models.audio import load_audio
    from tests.conftest import shared_data_dir

    paths = sorted((shared_data_dir() / "esc10").glob("*/*.ogg"))
    if not paths:
        sys.exit("no ESC-10 clips found: set AUDIOSEARCH_DATA or provide ../shared/data")
    # One clip from each class in turn, so a small batch is not all one sound.
    by_class = [sorted(c.glob("*.ogg")) for c in sorted({p.parent for p in paths})]
    paths = [p for group in itertools.zip_longest(*by_class) for p in group if p is not None][:n]
    rows = [load_audio(p, sample_rate) for p in paths]
    lens = np.array([len(r) for r in rows], dtype=np.int64)
    out = np.zeros((len(rows), width or int(lens.max())), dtype=np.float32)
    for i, r in enumerate(rows):
        out[i, : min(len(r), out.shape[1])] = r[: out.shape[1]]
    return out, np.minimum(lens, out.shape[1])


def rate(fn, waves: np.ndarray, lens: np.ndarray, batch: int) -> float:
    """Clips per second over all rows, `batch` rows per call."""
    t = time.perf_counter()
    for i in range(0, len(waves), batch):
        fn(waves[i : i + batch], lens[i : i + batch])
    return len(waves) / (time.perf_counter() - t)


def compare(name: str, args: argparse.Namespace) -> list[dict]:
    from audiosearch.models.onnx.audio import OnnxAudioSide
    from audiosearch.models.onnx.export import export_audio_onnx

    model = build(name)
    t = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        onnx = OnnxAudioSide(export_audio_onnx(model, Path(tmp) / "onnx"), model)
    export_s = time.perf_counter() - t
    waves, lens = clips(args.clips, model.sample_rate, onnx.samples)

    def torch_fn(w: np.ndarray, n: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model.embed_audio(torch.from_numpy(w), torch.from_numpy(n)).numpy()

    a, b = torch_fn(waves, lens), onnx.embed(waves, lens)
    cos = float(((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)).min())
    rows = []
    for batch in (1, 16):
        n = max(batch, min(len(waves), args.batch1_clips)) if batch == 1 else len(waves)
        t_rates, o_rates = [], []
        for _ in range(args.rounds):  # alternate, so both see the same background load
            t_rates.append(rate(torch_fn, waves[:n], lens[:n], batch))
            o_rates.append(rate(onnx.embed, waves[:n], lens[:n], batch))
        tr, orr = float(np.median(t_rates)), float(np.median(o_rates))
        rows.append(
            {
                "model": name,
                "tower": model.config.audio.kind,
                "batch": batch,
                "clips": n,
                "seconds_per_clip": round(waves.shape[1] / model.sample_rate, 2),
                "torch_cps": round(tr, 2),
                "onnx_cps": round(orr, 2),
                "ratio": round(orr / tr, 2),
                "min_cosine": round(cos, 6),
                "export_s": round(export_s, 1),
                "threads": torch.get_num_threads(),
                "load_avg": load_avg(),
            }
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["aisfx", "paper"])
    ap.add_argument("--clips", type=int, default=16, help="clips per batch-16 round (and for parity)")
    ap.add_argument("--batch1-clips", type=int, default=4, help="clips per batch-1 round")
    ap.add_argument("--rounds", type=int, default=3, help="alternating torch/ONNX rounds; the median counts")
    args = ap.parse_args()
    print(f"machine: {machine()}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    rows = []
    for name in args.models:
        for r in compare(name, args):
            rows.append(r)
            verdict = "pays" if r["ratio"] >= PAYS else "does not pay"
            print(
                f"{r['model']:>6} ({r['tower']}) batch {r['batch']:>2}: torch {r['torch_cps']} clips/s, "
                f"onnxruntime {r['onnx_cps']} clips/s, ratio x{r['ratio']} ({verdict} at >= {PAYS}); "
                f"min cosine {r['min_cosine']}; load {r['load_avg']}",
                flush=True,
            )
    print(f"appended to {append_csv('onnx_audio', rows)}")


if __name__ == "__main__":
    main()
