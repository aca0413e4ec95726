"""The benchmarks run end to end on a tiny size (their figures come from full runs, see README)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest

from tests.app.live import free_port as pick_port
from tests.conftest import REPO

pytestmark = pytest.mark.slow  # minutes in all: make test-all and CI run it


@pytest.fixture()
def free_port() -> int:
    return pick_port()


def run_bench(module: str, *args: str, tmp_path) -> str:
    env = {**os.environ, "AUDIOSEARCH_BENCH_RESULTS": str(tmp_path)}
    r = subprocess.run(
        [sys.executable, "-m", module, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


def test_query_bench_tiny(tmp_path, free_port) -> None:
    out = run_bench(
        "bench.query",
        "--sizes",
        "300",
        "--requests",
        "16",
        "--concurrency",
        "1",
        "8",
        "--port",
        str(free_port),
        "--client",
        "python",
        "--rounds",
        "2",
        tmp_path=tmp_path,
    )
    assert "300 vectors, concurrency  8:" in out and "mean batch" in out and "| x" in out
    assert "concurrency  8: median x" in out and "CPU ms/query: service" in out
    rows = list(csv.DictReader((tmp_path / "query.csv").open()))
    assert len(rows) == 6  # per round: the naive loop + 2 concurrencies
    assert [r["round"] for r in rows] == ["0"] * 3 + ["1"] * 3
    served = [r for r in rows if r["system"] == "audiosearch serve"]
    assert all(float(r["cpu_ms"]) > 0 and float(r["client_cpu_ms"]) > 0 for r in served)


def test_scale_bench_tiny(tmp_path) -> None:
    """The compressed kind forced by the settings on 3000 windows: built, served, measured, one JSON line."""
    args = ["--windows", "3000", "--queries", "20", "--flat-max-windows", "0", "--memory-budget", "2MB"]
    out = run_bench("bench.scale", *args, "--cache", str(tmp_path / "cache"), "--json", tmp_path=tmp_path)
    one = json.loads(out.splitlines()[-1])
    assert set(one) == {"windows", "index", "recall_at_10", "p50_ms", "p99_ms", "rss_mb", "build_s"}
    assert (one["windows"], one["index"]) == (3000, "IVF64,PQ192x4fsr") and 0.5 <= one["recall_at_10"] <= 1
    assert "concurrency 8:" in out and "| x" in out and "load " in out
    assert (tmp_path / "scale.csv").read_text().count("\n") == 3  # header + concurrency 1 and 8
    again = run_bench("bench.scale", *args, "--cache", str(tmp_path / "cache"), "--json", tmp_path=tmp_path)
    assert json.loads(again.splitlines()[-1])["build_s"] == one["build_s"]  # the cached library, reused


def test_ray_serve_bench_tiny(tmp_path) -> None:
    """The single process (twice) and 1 replica on 2 shards over 3000 windows; then the profile on a local Ray."""
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'audiosearch[ray]')")
    args = ["--windows", "3000", "--queries", "16", "--replicas", "1", "--shards", "2", "--json"]
    out = run_bench("bench.ray_serve", *args, "--cache", str(tmp_path / "cache"), tmp_path=tmp_path)
    one = json.loads(out.splitlines()[-1])
    assert (one["windows"], one["index"]) == (3000, "Flat") and one["single_qps"] > 0
    (ray,) = one["configs"]
    assert (ray["replicas"], ray["shards"]) == (1, 2) and ray["x_single_qps"] > 0 and ray["x_single_capacity"] > 0
    assert len(ray["shard_rss_mb"].split("/")) == 2 and float(ray["ingress_rss_mb"]) > 0  # one RSS per shard actor
    assert "target >= 0.5x the single process's QPS at 1 replica, 2 shards" in out and "load " in out
    assert "ray search, 2 shard(s)" in out and "scan half (shard 0 of 2)" in out
    assert (tmp_path / "ray_serve.csv").read_text().count("\n") == 7  # header + (single, ray, single) x 2 concurrencies
    assert (tmp_path / "ray_serve_profile.csv").read_text().count("\n") == 1 + 8 + 6


def test_index_bench_tiny(tmp_path, shared_data) -> None:
    out = run_bench("bench.index", "--clips", "6", tmp_path=tmp_path)
    assert "indexer / ceiling" in out and "peak RSS" in out


@pytest.mark.parametrize("module", ["bench.faiss"])
def test_faiss_bench_tiny(tmp_path, module: str) -> None:
    tiny = ["--n", "3000", "--queries", "20", "--nlist", "16", "--pq", "8", "--dim", "128"]
    out = run_bench(module, *tiny, tmp_path=tmp_path)
    assert "recall@10" in out and "HNSW32" in out
    assert out.count("lite ") >= 4 and out.count("random ") >= 4  # lite-like vectors first, then the others


def test_onnx_audio_bench_tiny(tmp_path, shared_data) -> None:
    out = run_bench(
        "bench.onnx_audio",
        "--models",
        "aisfx",
        "--clips",
        "2",
        "--batch1-clips",
        "1",
        "--rounds",
        "1",
        tmp_path=tmp_path,
    )
    assert "aisfx (aisfx) batch 16: torch" in out and "ratio x" in out and "min cosine" in out
    assert (tmp_path / "onnx_audio.csv").read_text().count("\n") == 3  # header + batch 1 and 16


def test_soak_bench_tiny(tmp_path) -> None:
    out = run_bench("bench.soak", "--minutes", "0.15", "--warmup", "3", "--concurrency", "4", tmp_path=tmp_path)
    assert ", 5xx 0, client_errors 0," in out and "reload 200 files 40->41" in out, out
    assert (tmp_path / "soak.csv").read_text().count("\n") == 2  # header + this run


def test_text_encoder_bench_tiny(tmp_path) -> None:
    out = run_bench("bench.text_encoder", "--rounds", "1", "--queries", "16", "--batches", "1", "8", tmp_path=tmp_path)
    assert "batch  8: onnxruntime" in out and "max |onnx - torch|" in out
    assert (tmp_path / "text_encoder.csv").read_text().count("\n") == 3


def test_text_encoder_exports_bench_tiny(tmp_path, lite_model, shared_data) -> None:
    """--exports against lite's own export under another name: the same speed path, cosine 1 on real captions."""
    same = lite_model.text_side.directory
    args = ("--exports", f"same={same}", "--threads", "1", "--rounds", "1", "--queries", "16", "--batches", "2")
    out = run_bench("bench.text_encoder", *args, tmp_path=tmp_path)
    assert "534 captions" in out and "batch  2, same, 1 threads:" in out, out
    assert "cosine to lite min 1.0 mean 1.0" in out, out
    assert (tmp_path / "text_exports.csv").read_text().count("\n") == 3  # header + lite's and the other's row


def test_hybrid_bench_tiny(tmp_path) -> None:
    out = run_bench("bench.hybrid", "--sizes", "400", "--queries", "20", tmp_path=tmp_path)
    assert "hybrid pages equal to the naive ranking: 20/20" in out and "hybrid vs naive" in out
    assert (tmp_path / "hybrid_query.csv").read_text().count("\n") == 5  # header + 4 rows


def test_gpu_paper_bench_smoke(tmp_path, shared_data) -> None:
    """The prepared device check for the imported paper model, at tiny sizes on the CPU."""
    from audiosearch.models.towers.modules.hf_text import minilm_path

    out = run_bench(
        "bench.gpu_paper",
        "--tokenizer",
        minilm_path(),
        "--clips",
        "4",
        "--workers",
        "1",
        "--queries",
        "4",
        "--smoke",
        tmp_path=tmp_path,
    )
    assert "import   imported d25-synthetic.ckpt (dcase2025)" in out and "fp16     cpu vs CPU fp32" in out
    assert "180/180 pages of 10 the same files in order" in out and "one page of 60 for 30/30 queries" in out
    assert "index_cps" in (tmp_path / "gpu.csv").read_text()


def test_footprint_bench_tiny(tmp_path, lite_model) -> None:
    # lite_model made the session's ONNX text export, so the demo index builds without an export step
    out = run_bench("bench.footprint", "--runs", "1", tmp_path=tmp_path)
    assert "slim: ready in" in out and "torch loaded: ready in" in out, out
    slim, naive = (line for line in out.splitlines() if line.startswith(("slim:", "torch loaded:")))
    assert slim.endswith("torch mapped: False") and naive.endswith("torch mapped: True")
    assert (tmp_path / "footprint.csv").read_text().count("\n") == 3  # header + slim and baseline


def test_gpu_lite_bench_smoke(tmp_path, shared_data) -> None:
    """The prepared device check for lite (bench/gpu_lite.py), prepared and run on the CPU: there the text side is
    fp32 torch with the pruned MiniLM against the CPU service's ONNX export with the full one."""
    folder = tmp_path / "gpu-lite"
    out = run_bench("bench.gpu_lite", "prepare", "--dir", str(folder), "--data", str(shared_data), tmp_path=tmp_path)
    assert "312 captions, 24 held out on 177 clips" in out, out
    run_bench("bench.gpu_lite", "run", "--dir", str(folder), "--smoke", tmp_path=tmp_path)
    with open(tmp_path / "gpu.csv", newline="") as f:
        (row,) = list(csv.DictReader(f))
    assert (row["device"], row["audio_provider"], row["text_device"]) == ("cpu", "CPUExecutionProvider", "cpu")
    assert float(row["fp16_vs_cpu_min"]) > 0.9999 and float(row["fp32_vs_cpu_min"]) > 0.99999
    assert float(row["audio_vs_cpu_min"]) > 0.9999
    assert 0.38 < float(row["held_map10_cpu"]) < 0.44  # eval_bridge.py's fusion raw 0ad-held figure: 0.408
    assert float(row["held_top10_overlap"]) > 0.9


def test_shards_bench_tiny(tmp_path) -> None:
    """3000 windows of compressed codes in 1 and 2 shards: recall against exact search, memory per shard."""
    args = ["--windows", "3000", "--shards", "1", "2", "--queries", "20", "--cache", str(tmp_path / "cache")]
    out = run_bench("bench.shards", *args, "--json", tmp_path=tmp_path)
    one, two = (json.loads(line) for line in out.splitlines()[-2:])
    assert (one["shards"], two["shards"], one["index"]) == (1, 2, "IVF64,PQ192x4fsr")
    assert one["recall_at_10"] == one["single_recall_at_10"] and one["same_as_single"] == 1.0
    assert 0.5 <= two["single_recall_at_10"] <= two["recall_at_10"] <= 1  # never below the single process
    assert two["shard_mb"] < one["shard_mb"] <= one["whole_mb"] and two["held_mb"] > 0
    assert (tmp_path / "shards.csv").read_text().count("\n") == 3  # header + 2 rows
