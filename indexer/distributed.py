"""`audiosearch index --ray`: decode and embed on a Ray cluster, then write the snapshot with `build_index`.

One code path for the index itself. The driver splits the files that still need embedding into shards; Ray
tasks decode them with `audiosearch.indexer.decode.decode_job` and embed them with `model.encode_audio`, exactly as the
local indexer does, and send the vectors back. The driver writes each finished shard to
INDEX_DIR/work/shards/<id>.npz (one atomic rename) and imports it into the embedding cache. `build_index` then
finds every file cached and only writes the snapshot: same format, same training sample for IVF/PQ codebooks,
same file ids. A crashed worker's task is retried by Ray; a rerun after a failed run reuses the shard files
already written. Ray is imported only here, so the service and the plain CLI never load it.

Workers read the audio at the driver's absolute paths (mount the library at the same path on every node)
and load the model by name or directory; the index directory is written by the driver only.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from audiosearch.core.atomic import atomic_write
from audiosearch.indexer.build import IndexOptions, IndexReport, build_index, job_for, resolve_window_hop, run_lock
from audiosearch.indexer.cache import EmbeddingCache
from audiosearch.indexer.decode import decode_job, init_worker
from audiosearch.indexer.decoded import Decoded, DecodeJob, DecodeSettings
from audiosearch.indexer.embed import embed_decoded
from audiosearch.indexer.errors import IndexBuildError
from audiosearch.indexer.ray_connect import ray_session
from audiosearch.indexer.scan import FileEntry, scan_library
from audiosearch.indexer.snapshots import previous_files
from audiosearch.models.aggregate import min_tail_seconds
from audiosearch.models.embedder import Embedded
from audiosearch.models.encoder import Encoder

log = logging.getLogger(__name__)

SHARD_FORMAT = 1


@dataclass
class RayOptions:
    address: str | None = None  # None: Ray's default (RAY_ADDRESS, a running local cluster, else a new local one)
    model_spec: str = "lite"  # what workers load: a profile name or a directory every node can read
    device: str = "auto"  # auto: GPU tasks (fp16 autocast) when the cluster has GPUs
    shard_files: int = 64  # average files per shard
    gpus_per_task: float = 0.5  # two tasks share a GPU, so one decodes while the other runs the model
    max_retries: int = 3  # per shard, for crashed workers and CUDA/IO errors
    onnx_dir: str | None = None  # an `export-onnx --audio` folder every node can read (audio on the CPU)


@dataclass
class RayIndexReport:
    index: IndexReport
    shards: int = 0
    reused: int = 0  # shard files written by an earlier, unfinished run
    files_embedded: int = 0  # on the cluster
    seconds: float = 0.0

    def summary(self) -> str:
        return (
            f"{self.index.summary()}; ray: {self.shards} shards ({self.reused} reused from an earlier run), "
            f"{self.files_embedded} files embedded on the cluster"
        )


@dataclass(frozen=True)
class Shard:
    id: str
    jobs: tuple[DecodeJob, ...]


@dataclass
class _Stats:
    shards: int = 0
    reused: int = 0
    embedded: int = 0
    hashes: dict[str, tuple[int, int, str]] = field(default_factory=dict)  # IndexOptions.known_hashes

    def record(self, shard: Shard, result: dict[str, Any]) -> None:
        """The shard's content hashes, so the snapshot phase does not read every file again."""
        for job, f in zip(shard.jobs, result["files"], strict=True):
            if f["sha1"]:
                self.hashes[job.path] = (job.size, job.mtime_ns, f["sha1"])


def build_index_ray(
    audio_dir: Path,
    index_dir: Path,
    model: Encoder,
    options: IndexOptions | None = None,
    ray_opts: RayOptions | None = None,
) -> RayIndexReport:
    """Embed on Ray what the cache lacks, then `build_index` (which then embeds nothing, or only stragglers)."""
    t0 = time.perf_counter()
    opts, ropts = options or IndexOptions(), ray_opts or RayOptions()
    stats = embed_shards(audio_dir, index_dir, model, opts, ropts)
    report = build_index(audio_dir, index_dir, model, replace(opts, known_hashes=stats.hashes))
    _remove_shards(index_dir)  # everything is in the cache and the snapshot now
    report.embedded += stats.embedded
    report.seconds = time.perf_counter() - t0
    return RayIndexReport(report, stats.shards, stats.reused, stats.embedded, report.seconds)


def embed_shards(audio_dir: Path, index_dir: Path, model: Encoder, opts: IndexOptions, ropts: RayOptions) -> _Stats:
    """The Ray phase alone: every file not yet in the embedding cache ends up there (or in a shard's errors)."""
    audio_dir, index_dir = Path(audio_dir).resolve(), Path(index_dir)
    if not audio_dir.is_dir():
        raise IndexBuildError(f"{audio_dir}: not a directory")
    window_s, hop_s = resolve_window_hop(model, opts)
    shard_dir = index_dir / "work" / "shards"
    shard_dir.mkdir(parents=True, exist_ok=True)
    with run_lock(shard_dir, "Ray indexing run"), ray_session(ropts.address):
        cache = EmbeddingCache(index_dir / "work" / "cache.sqlite", model.fingerprint, window_s, hop_s)
        try:
            done = cache.done_hashes()
            entries, _ = scan_library(audio_dir)  # unreadable entries are reported by build_index
            shards = plan_shards(audio_dir, entries, previous_files(index_dir), done, model, window_s, hop_s, ropts)
            settings = DecodeSettings(
                model.sample_rate, window_s, hop_s, opts.max_seconds, opts.stream_over_s, min_tail_seconds(model.config)
            )
            return _run_shards(shards, shard_dir, cache, done, settings, model, opts, ropts)
        finally:
            cache.close()


def plan_shards(
    root: Path,
    entries: list[FileEntry],
    prev: dict[str, tuple[int, int, int, str]],
    done: set[str],
    model: Encoder,
    window_s: float,
    hop_s: float,
    ropts: RayOptions,
) -> list[Shard]:
    """Shards of the files the cache may lack. A shard's id hashes its files (path, size, mtime) and the
    embedding settings, and shards end where a path's hash says so, so a changed or added file changes
    only its own shard's id: a rerun after a failure finds the other shards' files again."""
    candidates = (job_for(e, root, prev, {}) for e in entries)
    jobs = [j for j in candidates if j.sha1 is None or j.sha1 not in done]
    salt = f"{SHARD_FORMAT}|{root}|{model.fingerprint}|{window_s:g}|{hop_s:g}"
    return [Shard(_shard_id(salt, chunk), tuple(chunk)) for chunk in _chunks(jobs, max(1, ropts.shard_files))]


def _chunks(jobs: list[DecodeJob], target: int) -> Iterator[list[DecodeJob]]:
    chunk: list[DecodeJob] = []
    for job in jobs:
        chunk.append(job)
        cut = int(hashlib.sha1(job.path.encode()).hexdigest()[:8], 16) % target == 0
        if (cut and len(chunk) >= max(1, target // 4)) or len(chunk) >= 4 * target:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _shard_id(salt: str, jobs: list[DecodeJob]) -> str:
    h = hashlib.sha1(salt.encode())
    for j in jobs:
        h.update(f"\n{j.path}\t{j.size}\t{j.mtime_ns}".encode())
    return h.hexdigest()[:24]


def _run_shards(
    shards: list[Shard],
    shard_dir: Path,
    cache: EmbeddingCache,
    done: set[str],
    settings: DecodeSettings,
    model: Encoder,
    opts: IndexOptions,
    ropts: RayOptions,
) -> _Stats:
    import ray

    stats = _Stats(shards=len(shards))
    todo = []
    for shard in shards:
        saved = _read_shard(shard_dir / f"{shard.id}.npz")
        if saved is None:
            todo.append(shard)
        else:
            stats.reused += 1
            _import(saved, cache, done)
            stats.record(shard, saved)
    if not todo:
        return stats
    device, gpus = _worker_device(ropts)
    task = ray.remote(_embed_shard).options(
        num_cpus=1, num_gpus=gpus, max_retries=ropts.max_retries, retry_exceptions=[RuntimeError, OSError, MemoryError]
    )
    # Only what the model cannot already skip travels: the content hashes already embedded (renamed files).
    done_ref = ray.put(frozenset(done))
    spec = _model_spec(ropts.model_spec)
    args = (settings, spec, device, model.fingerprint, ropts.onnx_dir, opts.batch_size, done_ref)
    for shard, result in _completed(task, todo, args, _in_flight(ray, gpus), ropts.max_retries):
        _write_shard(shard_dir / f"{shard.id}.npz", result)
        stats.embedded += _import(result, cache, done)
        stats.record(shard, result)
    log.info("ray: %d shards, %d reused, %d files embedded", stats.shards, stats.reused, stats.embedded)
    return stats


def _completed(task: Any, todo: list[Shard], args: tuple, in_flight: int, retries: int) -> Iterator[tuple[Shard, dict]]:
    """Shards in completion order, with a bounded number of results waiting in the object store."""
    import ray
    from ray.exceptions import RayError

    queue = iter(todo)
    pending: dict[Any, Shard] = {}
    while True:
        while len(pending) < in_flight and (shard := next(queue, None)) is not None:
            pending[task.remote(shard, *args)] = shard
        if not pending:
            return
        [ref], _ = ray.wait(list(pending), num_returns=1)
        shard = pending.pop(ref)
        try:
            yield shard, ray.get(ref)
        except RayError as err:
            raise IndexBuildError(
                f"ray: shard {shard.id} ({len(shard.jobs)} files from {shard.jobs[0].path}) failed after "
                f"{1 + retries} tries at most: {_first_line(err)}; finished shards are kept, rerun to continue"
            ) from None


def _in_flight(ray: Any, gpus: float) -> int:
    res = ray.cluster_resources()
    slots = res.get("GPU", 0) / gpus if gpus else res.get("CPU", 1)
    return max(2, int(2 * slots))


def _worker_device(ropts: RayOptions) -> tuple[str, float]:
    import ray

    has_gpu = ray.cluster_resources().get("GPU", 0) > 0
    if ropts.device == "cuda" and not has_gpu:
        raise IndexBuildError("--device cuda: the Ray cluster has no GPUs")
    if ropts.device == "cpu" or not has_gpu:
        return "cpu", 0.0
    return "cuda", ropts.gpus_per_task


def _model_spec(spec: str) -> str:
    path = Path(spec)
    return str(path.resolve()) if path.is_dir() else spec  # workers do not share the driver's cwd


def _first_line(err: BaseException) -> str:
    cause = getattr(err, "cause", None) or err
    lines = [line for line in str(cause).splitlines() if line.strip()]
    return f"{type(cause).__name__}: {lines[-1] if lines else ''}"


# -- on the workers ------------------------------------------------------------------------------------

_MODELS: dict[tuple[str, str, str | None], Encoder] = {}  # Ray reuses worker processes: load the model once each


def _embed_shard(
    shard: Shard,
    settings: DecodeSettings,
    spec: str,
    device: str,
    fingerprint: str,
    onnx_dir: str | None,
    batch_size: int,
    done: frozenset[str],
) -> dict[str, Any]:
    """Decode and embed one shard: {'files': [...], 'vectors', 'starts', 'ends'} in file order."""
    model = _worker_model(spec, device, fingerprint, onnx_dir)
    init_worker(done, settings)
    files: list[dict[str, Any]] = []
    out: list[np.ndarray] = []
    for d, e in embed_decoded(map(decode_job, shard.jobs), model, settings, batch_size):
        files.append(_file_meta(d, e))
        if e.vectors is not None:
            out.append(e.vectors)
    vectors = np.concatenate(out) if out else np.zeros((0, model.dim), np.float32)
    starts = [s for f in files for s in f.pop("starts")]
    ends = [e for f in files for e in f.pop("ends")]
    return {"files": files, "vectors": vectors, "starts": np.array(starts), "ends": np.array(ends)}


def _worker_model(spec: str, device: str, fingerprint: str, onnx_dir: str | None) -> Encoder:
    key = (spec, device, onnx_dir)
    if key not in _MODELS:
        from audiosearch.models import load_encoder

        _MODELS[key] = load_encoder(spec, device=device, onnx_dir=onnx_dir)
    model = _MODELS[key]
    if model.fingerprint != fingerprint:
        raise IndexBuildError(
            f"the Ray workers load model {model.fingerprint}, the driver has {fingerprint}: "
            "install the same audiosearch version and model on every node"
        )
    return model


def _file_meta(d: Decoded, e: Embedded) -> dict[str, Any]:
    n = 0 if e.vectors is None else len(e.vectors)
    return {
        "path": d.job.path,
        "sha1": d.sha1,
        "duration": d.duration,
        "sample_rate": d.sample_rate,
        "channels": d.channels,
        "windows": n,
        "cached": d.cached,
        "error": d.error,
        "starts": [] if n == 0 else e.starts.tolist(),  # type: ignore[union-attr]
        "ends": [] if n == 0 else e.ends.tolist(),  # type: ignore[union-attr]
    }


# -- shard files and the cache (driver) -----------------------------------------------------------------


def _write_shard(path: Path, result: dict[str, Any]) -> None:
    """One file per shard, renamed into place: a shard file on disk is always complete."""
    buf = io.BytesIO()
    meta = json.dumps({"format": SHARD_FORMAT, "files": result["files"]})
    np.savez(buf, vectors=result["vectors"], starts=result["starts"], ends=result["ends"], meta=np.array(meta))
    atomic_write(path, buf.getvalue())


def _read_shard(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            if meta.get("format") != SHARD_FORMAT:
                return None
            return {"files": meta["files"], "vectors": z["vectors"], "starts": z["starts"], "ends": z["ends"]}
    except (OSError, ValueError, KeyError) as err:  # a damaged shard is recomputed, not trusted
        log.warning("ray: ignoring unreadable shard %s (%s)", path.name, err)
        return None


def _import(result: dict[str, Any], cache: EmbeddingCache, done: set[str]) -> int:
    """Shard -> embedding cache, one file per transaction (as the local indexer commits). Returns files added."""
    added, at = 0, 0
    for f in result["files"]:
        n = f["windows"]
        rows = slice(at, at + n)
        at += n
        if n == 0 or f["sha1"] in done:
            continue
        vecs, starts, ends = result["vectors"][rows], result["starts"][rows], result["ends"][rows]
        cache.put(f["sha1"], f["duration"], f["sample_rate"], f["channels"], starts, ends, vecs)
        done.add(f["sha1"])
        added += 1
    return added


def _remove_shards(index_dir: Path) -> None:
    for p in (index_dir / "work" / "shards").glob("*.npz"):
        p.unlink(missing_ok=True)
