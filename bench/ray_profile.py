"""The pieces of a sharded text query, each timed alone in this process (bench.ray_serve runs it after the HTTP
runs; it is not a command of its own).

For batches of 1 and 8 queries: encoding (lite's text tower), the FAISS scan of the whole index and of half of it
(ShardPart, as shard 0 of 2 holds it), merge_top over 2 shards' lists, a Ray round trip to a shard actor that
does no work (ShardActor.info), and the sharded search through RayShards (one call per shard, side by side, then
merged) with 1 and 2 shards on a local Ray started here. Each: the median wall time, and the CPU ms per call of
each process (this one, the shard actors, Ray's own), so what a Ray call adds shows beside what it carries.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bench.common import cpu_s, descendants, load_avg
from bench.query import queries

K = 40  # what AudioIndex.grouped asks the index for, for a page of 10


def roles(root: int, root_role: str = "controller") -> dict[int, str]:
    """Every live process under `root` and its role: controller (the `serve` process; also the ingress where it
    serves in-process), ingress (a uvicorn worker, --replicas > 1), shard, ray (gcs_server, raylet, the
    dashboard and its agents, idle workers), other (multiprocessing's resource tracker)."""
    out = {}
    for pid in descendants(root):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if pid == root:
            out[pid] = root_role
        elif cmd.startswith("ray::ShardActor"):
            out[pid] = "shard"
        elif "spawn_main" in cmd:
            out[pid] = "ingress"
        else:
            out[pid] = "ray" if cmd.startswith("ray::") or "/ray/" in cmd else "other"
    return out


def cpu_by_role(procs: dict[int, str], before: dict[int, float], calls: int) -> dict[str, float]:
    """CPU ms per call of each role, from `before` (cpu_s at the start) to now."""
    spent: dict[str, float] = {}
    for pid, r in procs.items():
        if pid in before and not np.isnan(now := cpu_s(pid)):
            spent[r] = spent.get(r, 0.0) + now - before[pid]
    return {r: round(s * 1e3 / calls, 2) for r, s in sorted(spent.items())}


def timed(what: str, batch: int, call: Callable[[], object], min_s: float = 1.0) -> dict:
    """Median wall ms of `call` (at least 30 calls and `min_s` seconds, after 3), CPU ms per call by process."""
    for _ in range(3):
        call()
    procs = roles(os.getpid(), root_role="this")
    before = {p: cpu_s(p) for p in procs}
    took: list[float] = []
    while len(took) < 30 or (sum(took) < min_s and len(took) < 5000):
        t = time.perf_counter()
        call()
        took.append(time.perf_counter() - t)
    cpu = cpu_by_role(procs, before, len(took))
    row = {"step": what, "batch": batch, "ms": round(statistics.median(took) * 1e3, 3), "cpu_ms": json.dumps(cpu)}
    row["load_avg"] = load_avg()
    print(f"  {what:<40} batch {batch}: {row['ms']:>8} ms | CPU ms/call {cpu} | load {row['load_avg']}", flush=True)
    return row


def local_steps(snapshot: Path, model, vecs: dict) -> list[dict]:  # noqa: ANN001 - an Encoder
    from audiosearch.indexer.search.shards import ShardPart, merge_top

    halves = [ShardPart(snapshot, i, 2) for i in range(2)]
    scans = {"scan all (1 shard)": ShardPart(snapshot, 0, 1).search, "scan half (shard 0 of 2)": halves[0].search}
    out = []
    for b, q in vecs.items():
        texts = queries(b, seed=60 + b, block=60 + b)
        out.append(timed(f"encode {b} text(s)", b, lambda t=texts: model.encode_text(t)))
        out += [timed(name, b, lambda f=f, q=q: f(q, K)) for name, f in scans.items()]
        parts = [h.search(q, K) for h in halves]
        out.append(timed("merge_top of 2 shards", b, lambda p=parts: merge_top(p, K)))
    return out


def ray_steps(snapshot: Path, vecs: dict) -> list[dict]:
    import ray

    from audiosearch.indexer.search.ray_shards import RayShards

    out = []
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    try:
        for m in (1, 2):
            source = RayShards(m, f"bench-profile-{m}")
            sharded, first = source.open(snapshot), source.actors(snapshot)[0]
            out.append(timed(f"ray round trip, no work ({m} shard up)", 1, lambda a=first: ray.get(a.info.remote())))
            out += [
                timed(f"ray search, {m} shard(s)", b, lambda q=q, s=sharded: s.search(q, K)) for b, q in vecs.items()
            ]
            source.retire(keep=set())
    finally:
        ray.shutdown()
    return out


def profile(index: Path, model) -> list[dict]:  # noqa: ANN001 - an Encoder
    from audiosearch.core.threads import one_search_thread
    from audiosearch.indexer.snapshots import require_snapshot

    one_search_thread()  # as the service's search threads
    snapshot = require_snapshot(index)
    vecs = {b: model.encode_text(queries(b, seed=50 + b, block=50 + b)) for b in (1, 8)}
    print(f"profile ({snapshot.name}): wall ms median; CPU ms per call by process", flush=True)
    return local_steps(snapshot, model, vecs) + ray_steps(snapshot, vecs)
