"""The imported paper model at full size on a lent GPU, in one prepared run.

1. A synthetic checkpoint in the DCASE 2025 baseline's layout (its key names with torch.compile's `_orig_mod.`,
   PaSST-S + RoBERTa-large shapes, random values; the published file cannot be fetched on the device) is
   written as a Lightning .ckpt and imported with `audiosearch import-checkpoint`'s code: seconds, sizes.
2. The imported directory loads on the GPU (GPU memory of the weights) and indexes `--clips` 10 s Ogg clips
   with fp16 autocast (clips/s, peak GPU memory).
3. Queries through the service layer (SearchService: RoBERTa-large forward in fp16 + the search on the GPU): p50
   and p95 ms at batch 1, distinct queries (the query cache never hits). Before that, the GPU search's pages
   against FAISS on the CPU for the same query vectors, in every mode: the library holds each clip ~24 times
   (near-ties everywhere), the pages of 10 must join into the one page of 60 (no file twice, none skipped).
4. fp16 on the GPU against fp32 on the CPU for the same clips and captions: the lowest cosine (how far fp16
   inference is from the reference's fp32 numbers).

`--tokenizer` names any BERT-style tokenizer folder (MiniLM's works; RoBERTa's own cannot be fetched there);
the import config takes its padding id. `--smoke` runs everything at tiny sizes on the CPU.

Usage: python -m bench.gpu_paper --tokenizer DIR [--clips 1000] [--workers N] [--queries 200] [--smoke]
Appends to bench/results/gpu.csv ($AUDIOSEARCH_BENCH_RESULTS to write elsewhere).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench.common import append_csv, machine
from bench.index import library

QUERIES = [
    "a dog barking",
    "rain on a roof",
    "a rooster crowing",
    "waves on a beach",
    "a chainsaw",
    "a baby crying",
    "a clock ticking",
    "a helicopter passing",
    "fire crackling",
    "someone sneezing",
]


def synthetic_checkpoint(args: argparse.Namespace, tmp: Path) -> tuple[Path, object]:
    """A Lightning checkpoint named and shaped as the d25 baseline's, random values; and the import config."""
    from audiosearch.models.dual_encoder import DualEncoder
    from audiosearch.models.reference import LAYOUTS, import_config
    from audiosearch.models.reference.convert import source_key

    cfg = import_config("dcase2025")
    build = import_config("dcase2025")
    build.text.options["tokenizer"] = args.tokenizer
    if args.smoke:
        for c in (cfg, build):
            c.audio.options.update(depth=1, embed_dim=64, num_heads=2)
            c.text.options["config"].update(
                hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64
            )
            c.embed_dim = 48
    torch.manual_seed(0)
    model = DualEncoder(build)  # random: timings and memory are those of trained weights
    pad = model.text_tower.tokenizer.pad_token_id
    for c in (cfg, build):
        c.text.options["config"]["pad_token_id"] = pad
    state = {}
    for k, v in model.state_dict().items():
        theirs = source_key(k, LAYOUTS["dcase2025"])
        theirs = theirs.replace("model.model.", "model.model._orig_mod.").replace(
            "text_embedding_model.", "text_embedding_model._orig_mod."
        )
        state[theirs] = v.reshape(1).exp() if k == "log_temperature" else v
    path = tmp / "d25-synthetic.ckpt"
    torch.save({"epoch": 0, "global_step": 0, "state_dict": state, "hyper_parameters": {"compile": True}}, path)
    del model, state
    return path, cfg


def pages_vs_cpu(service, index_dir: Path, model) -> dict:
    """The service's search (on the GPU) against FAISS on the CPU, same query vectors: how many pages are the
    same files in the same order, the largest score difference, and whether pages of 10 join into one of 60."""
    from audiosearch.app.search_service import SearchService

    cpu = SearchService(model, index_dir, cache_size=0, device="cpu")
    vectors = service.text_vectors(QUERIES)
    same = total = joined = 0
    worst = 0.0
    for mode in ("hybrid", "audio", "text"):
        whole = service.searcher.search(vectors, 60, 0, None, QUERIES, mode)
        pages = [service.searcher.search(vectors, 10, at, None, QUERIES, mode) for at in range(0, 60, 10)]
        ref = [cpu.searcher.search(vectors, 10, at, None, QUERIES, mode) for at in range(0, 60, 10)]
        for q in range(len(QUERIES)):
            joined += [h.file_id for p in pages for h in p[q].hits] == [h.file_id for h in whole[q].hits]
            for mine, theirs in zip(pages, ref, strict=True):
                total += 1
                same += [h.file_id for h in mine[q].hits] == [h.file_id for h in theirs[q].hits]
                diffs = [abs(a.score - b.score) for a, b in zip(mine[q].hits, theirs[q].hits, strict=True)]
                worst = max([worst, *diffs])
    cpu.searcher.close()
    n = 3 * len(QUERIES)
    backend = type(service.searcher.audio.backend).__name__
    print(
        f"pages    GPU search ({backend}) vs FAISS CPU: {same}/{total} pages of 10 "
        f"the same files in order, largest score difference {worst:.2e}; pages of 10 = one page of 60 for "
        f"{joined}/{n} queries (hybrid, audio, text)",
        flush=True,
    )
    return {"pages_same": f"{same}/{total}", "max_score_diff": f"{worst:.2e}", "pages_joined": f"{joined}/{n}"}


def gpu_gb() -> float:
    return torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokenizer", required=True, help="BERT-style tokenizer folder")
    ap.add_argument("--clips", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 2))
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU: checks the script")
    args = ap.parse_args()
    device = "cuda" if torch.cuda.is_available() and not args.smoke else "cpu"
    from audiosearch.app.search_service import SearchService
    from audiosearch.core.threads import configure_threads
    from audiosearch.indexer import IndexOptions, QuerySpec, build_index
    from audiosearch.models import load_model
    from audiosearch.models.embedder import embed_files
    from audiosearch.models.reference import import_checkpoint

    configure_threads()
    print(f"machine: {machine()}; torch {torch.__version__}; device {device}", flush=True)
    row: dict = {"section": "paper-import", "smoke": args.smoke}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        ckpt, cfg = synthetic_checkpoint(args, tmp)
        t = time.perf_counter()
        report = import_checkpoint(ckpt, "dcase2025", tmp / "model", tokenizer=args.tokenizer, config=cfg)
        row.update(
            import_s=round(time.perf_counter() - t, 1),
            ckpt_gb=round(ckpt.stat().st_size / 2**30, 2),
            tensors=report.converted,
        )
        print(f"import   {report.summary()} in {row['import_s']} s ({row['ckpt_gb']} GB checkpoint)", flush=True)

        model = load_model(tmp / "model", device)
        row["weights_gpu_gb"] = round(gpu_gb(), 2)
        lib = library(args.clips, tmp / "lib", clip_seconds=10)
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        r = build_index(
            lib, tmp / "idx", model, IndexOptions(workers=args.workers, batch_size=args.batch, progress=False)
        )
        row.update(clips=args.clips, index_cps=round(r.clips_per_second, 1), index_gpu_gb=round(gpu_gb(), 2))
        print(
            f"index    {args.clips} 10 s clips, fp16, batch {args.batch}, {args.workers} workers: "
            f"{r.clips_per_second:.1f} clips/s, peak GPU memory {gpu_gb():.2f} GB "
            f"(weights alone {row['weights_gpu_gb']} GB)",
            flush=True,
        )

        service = SearchService(model, tmp / "idx", cache_size=0, device=device)
        row.update(pages_vs_cpu(service, tmp / "idx", model))
        queries = [f"{q} number {i}" for i, q in zip(range(args.queries), QUERIES * args.queries, strict=False)]
        service.search_batch(queries[:2], [QuerySpec(10, text=q) for q in queries[:2]])  # warm-up
        times, encode, rank = [], [], []
        for q in queries:  # the two halves of search_batch, timed apart: where a query's time goes
            t0 = time.perf_counter()
            vec = service.text_vectors([q])
            t1 = time.perf_counter()
            service.searcher.search(vec, 10, 0, None, [q], "hybrid")
            t2 = time.perf_counter()
            times.append((t2 - t0) * 1000)
            encode.append((t1 - t0) * 1000)
            rank.append((t2 - t1) * 1000)
        row.update(
            query_p50_ms=round(float(np.median(times)), 2),
            query_p95_ms=round(float(np.percentile(times, 95)), 2),
            encode_p50_ms=round(float(np.median(encode)), 2),
            search_p50_ms=round(float(np.median(rank)), 2),
        )
        print(
            f"serve    {len(times)} queries, batch 1: p50 {row['query_p50_ms']} ms, p95 {row['query_p95_ms']} ms "
            f"(text encoding p50 {row['encode_p50_ms']} ms, hybrid search p50 {row['search_p50_ms']} ms)",
            flush=True,
        )

        files = sorted(lib.rglob("*.ogg"))[:8]
        fast = np.concatenate([e.vectors for e in embed_files(model, files)])
        fast_q = model.encode_text(QUERIES)
        del model, service
        ref = load_model(tmp / "model", "cpu")  # fp32, as the reference's predict.py runs
        slow = np.concatenate([e.vectors for e in embed_files(ref, files)])
        row.update(
            min_cos_audio=round(float((fast * slow).sum(1).min()), 5),
            min_cos_text=round(float((fast_q * ref.encode_text(QUERIES)).sum(1).min()), 5),
        )
        print(
            f"fp16     {device} vs CPU fp32: lowest cosine audio {row['min_cos_audio']}, text {row['min_cos_text']}",
            flush=True,
        )
    append_csv("gpu", [row])


if __name__ == "__main__":
    main()
