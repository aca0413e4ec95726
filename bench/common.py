"""Shared bits of the benchmarks: machine description, CSV output, synthetic indexes."""

from __future__ import annotations

import csv
import itertools
import os
import platform
import socket
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np

CLI = [sys.executable, "-m", "audiosearch.app.cli"]  # the service and indexer as users start them
RESULTS = Path(os.environ.get("AUDIOSEARCH_BENCH_RESULTS", Path(__file__).resolve().parent / "results"))


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores{_gpu()}"


def _gpu() -> str:
    torch = sys.modules.get("torch")  # only a run that already uses torch can have a GPU worth naming
    if torch is None or not torch.cuda.is_available():
        return ""
    return f", {torch.cuda.get_device_name(0)}"


def load_avg(digits: int = 1) -> str:
    """The 1/5/15-minute load averages as "1.2/1.4/1.3": the machine is shared, other work shows here."""
    return "/".join(f"{x:.{digits}f}" for x in os.getloadavg())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int, part: str = "VmRSS") -> float:
    """A process's resident memory in MB (nan for one that has none left: a zombie). `part` "RssAnon": only its
    own pages, without the file pages it maps (a memory-mapped index's pages belong to the page cache)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{part}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def descendants(root: int) -> list[int]:
    """`root` and every live process under it (from /proc: Linux)."""
    parent: dict[int, int] = {}
    for d in Path("/proc").glob("[0-9]*"):
        try:
            parent[int(d.name)] = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
    found, todo = [root], [root]
    while todo:
        at = todo.pop()
        kids = [p for p, pp in parent.items() if pp == at]
        found += kids
        todo += kids
    return found


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system, every thread) a process has used; nan once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def recall(found: Iterable, truth: Iterable) -> float:
    """The mean share of each truth row (e.g. the exact top 10) that the found row beside it holds."""
    return float(np.mean([len(set(np.asarray(f).tolist()) & set(np.asarray(t).tolist())) / len(t)
                          for f, t in zip(found, truth, strict=True)]))  # fmt: skip


def pct(lat: list[float], p: float) -> float:
    """The p-quantile of latencies in seconds, in ms."""
    s = sorted(lat)
    return round(s[int(p * (len(s) - 1))] * 1e3, 2)


def append_csv(name: str, rows: list[dict]) -> Path:
    """Append rows; when a benchmark gained columns, the file is rewritten with the union (old rows blank)."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.csv"
    stamp = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "machine": machine()}
    new_rows = [{**stamp, **r} for r in rows]
    old_rows: list[dict] = []
    if path.exists():
        with open(path, newline="") as f:
            old_rows = list(csv.DictReader(f))
    fields = list(dict.fromkeys(k for r in old_rows + new_rows for k in r))
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(old_rows + new_rows)
    return path


def random_unit(n: int, dim: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), dtype=np.float32)
    for i in range(0, n, 100_000):  # blocks keep the float64 temporaries small
        block = rng.standard_normal((min(100_000, n - i), dim)).astype(np.float32)
        out[i : i + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def synthetic_index(index_dir: Path, vectors: np.ndarray, fingerprint: str, factory: str = "Flat", policy=None) -> Path:
    """An index directory in the real format whose windows are random vectors (one window per file). `factory`
    "auto" chooses as `audiosearch index --faiss auto` does, under `policy` (an IndexPolicy; default the default)."""
    blocks = (vectors[i : i + 100_000] for i in range(0, len(vectors), 100_000))
    return synthetic_index_blocks(index_dir, len(vectors), vectors.shape[1], blocks, fingerprint, factory, policy)


def synthetic_index_blocks(
    index_dir: Path, n: int, dim: int, blocks: Iterable[np.ndarray], fingerprint: str, factory: str, policy=None
) -> Path:
    """synthetic_index from n vectors given in blocks, never all in memory: the first training_size (as the
    indexer trains, indexer.build) train the index, then every block is added as the indexer adds files."""
    from audiosearch.indexer.faiss_index import choose_index, train_if_needed, training_size
    from audiosearch.indexer.store import SnapshotWriter

    choice = choose_index(factory, n, dim, policy)
    writer = SnapshotWriter(index_dir, dim, choice.factory)
    blocks = iter(blocks)
    held: list[np.ndarray] = []
    size = training_size(writer.index)
    while sum(map(len, held)) < min(n, size):
        held.append(next(blocks))
    train_if_needed(writer.index, np.concatenate(held)[:size], choice.factory)
    one = (np.zeros(1), np.full(1, 10.0))
    row = (1, 0, "0" * 40, 10.0, 32000, 1)  # size, mtime_ns, sha1, duration, sample_rate, channels
    done = 0
    for block in itertools.chain(held, blocks):
        writer.add_files([(i + 1, (f"synthetic/{i:08d}.wav", *row), *one) for i in range(done, done + len(block))])
        writer.add_vectors(block)
        done += len(block)
    writer.commit(
        {
            "library": str(index_dir / "none"),
            "created": "synthetic",
            "model": {"name": "lite", "fingerprint": fingerprint, "dim": dim, "sample_rate": 0},
            "window_seconds": 10.0,
            "hop_seconds": 10.0,
            "counts": {"files": n, "windows": n, "skipped": 0},
            "faiss_choice": choice.manifest(),
        }
    )
    return index_dir


def paper_random_config(text=None):
    """The paper profile's full-size PaSST-S with random weights (its hub weights cannot be fetched here) and
    `text` (a TowerConfig; default the offline MiniLM tower): enough to time the audio side, which is all
    the benchmarks use it for."""
    from audiosearch.models.config import ModelConfig
    from audiosearch.models.profiles import profile

    audio = profile("paper").audio
    audio.options["pretrained"] = False  # random, not hear21passt's AudioSet download
    return ModelConfig(name="paper-random", audio=audio, text=text or profile("lite").text)
