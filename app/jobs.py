"""Training jobs for the service: each run in its own spawned process, its state in files.

`<jobs_dir>/<id>/` holds config.json (the resolved run config), status.json (written atomically, by
the child while it runs and by the parent on cancel / crash), log.txt and run/ (checkpoints,
state.json). A separate process keeps training off the search process's event loop, GIL and model;
spawn (not fork) because forking a process with torch and uvicorn threads can deadlock.

States: queued -> running -> finished | failed | cancelled; jobs left queued/running by a server
that went away are marked interrupted when the next manager starts (their checkpoints remain, and
the same config resumes after the last finished stage).
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from audiosearch.core.atomic import atomic_write_json
from audiosearch.core.errors import AudioSearchError, InvalidInputError
from audiosearch.training.run_config import parse_data_specs, parse_model, parse_run_config

log = logging.getLogger(__name__)
ACTIVE = ("queued", "running")
STATUS, CONFIG = "status.json", "config.json"


# A caption file /eval may read into the service's memory (the largest shared set, Clotho dev, is 2 MB).
MAX_EVAL_FILE_BYTES = 64 * 1024 * 1024


class JobNotFoundError(AudioSearchError):
    """No job with this id under the jobs directory."""


class JobLimitError(AudioSearchError):
    """As many training jobs as allowed are running already."""


class JobManager:
    def __init__(
        self, jobs_dir: Path, data_root: Path, threads: int | None = None, max_jobs: int = 1, max_eval_clips: int = 5000
    ) -> None:
        self.dir = Path(jobs_dir).resolve()
        self.dir.mkdir(parents=True, exist_ok=True)
        self.data_root = Path(data_root).resolve()
        self.max_jobs, self.max_eval_clips = max_jobs, max_eval_clips
        # Half the cores by default: the search service keeps the rest while a job computes features.
        self.threads = threads or max(1, (os.cpu_count() or 2) // 2)
        self._procs: dict[str, BaseProcess] = {}
        self._lock = threading.Lock()
        self.recover()

    def submit(self, raw: dict[str, Any]) -> str:
        """Validate the config (paths confined to the data root / jobs dir), then start the child."""
        job_id = uuid.uuid4().hex[:12]
        job_dir = self.dir / job_id
        raw = dict(raw)
        # Outputs are relative to the job's own folder; features are shared by all jobs.
        raw["output"] = str(job_dir / str(raw.get("output") or "run"))
        if raw.get("cache_dir") is not None:
            raw["cache_dir"] = str(job_dir / str(raw["cache_dir"]))
        else:
            raw["cache_dir"] = str(self.dir / "features")
        cfg = parse_run_config(raw, self.data_root, "config", read_root=self.data_root, write_root=self.dir)
        with self._lock:  # counted and started under one lock: two requests cannot both take the last slot
            running = self.running()
            if running >= self.max_jobs:
                raise JobLimitError(
                    f"{running} training job(s) running, the limit is {self.max_jobs} "
                    "(AUDIOSEARCH_MAX_TRAINING_JOBS); wait for one to end or cancel it"
                )
            return self._start(job_id, job_dir, cfg.to_dict())

    def running(self) -> int:
        """Jobs of this manager at work (jobs of an earlier server are marked interrupted): process alive and its
        state still active. A job that wrote its end state is only exiting, and its client may start the next."""
        return sum(1 for i, p in self._procs.items() if p.is_alive() and self._at_work(i))

    def _at_work(self, job_id: str) -> bool:
        try:
            return self._read(job_id)["state"] in ACTIVE
        except (JobNotFoundError, OSError, ValueError):  # its folder gone or its status unreadable: still counted
            return True

    def _start(self, job_id: str, job_dir: Path, config: dict[str, Any]) -> str:
        job_dir.mkdir()
        atomic_write_json(job_dir / CONFIG, config)
        # queued is written before start(): the child's "running" must never be overwritten by it
        atomic_write_json(job_dir / STATUS, {"id": job_id, "state": "queued", "created": time.time()})
        proc = multiprocessing.get_context("spawn").Process(
            target=run_job,
            args=(str(job_dir), str(self.data_root), self.threads),
            name=f"train-{job_id}",
            daemon=True,  # a stopping server takes its jobs down; they come back as "interrupted"
        )
        proc.start()
        self._procs[job_id] = proc
        log.info("training job %s started (pid %s)", job_id, proc.pid)
        return job_id

    def status(self, job_id: str) -> dict[str, Any]:
        status = self._read(job_id)
        proc = self._procs.get(job_id)
        if status["state"] in ACTIVE and proc is not None and not proc.is_alive():
            status = self._read(job_id)  # the child may have written its last state just before exiting
            if status["state"] in ACTIVE:
                status = self._update(
                    job_id, state="failed", error=f"the training process exited with code {proc.exitcode}"
                )
        return status

    def list(self) -> list[dict[str, Any]]:
        ids = [d.name for d in self.dir.iterdir() if (d / STATUS).is_file()]
        return sorted((self.status(i) for i in ids), key=lambda s: s.get("created", 0))

    def cancel(self, job_id: str) -> dict[str, Any]:
        status = self.status(job_id)
        if status["state"] not in ACTIVE:
            return status  # finished, failed or already cancelled: nothing to stop
        proc = self._procs.get(job_id)
        if proc is not None:
            proc.terminate()
            proc.join(10)
            if proc.is_alive():
                proc.kill()
                proc.join(5)
        elif _alive(status.get("pid")):  # started by an earlier manager of this server
            os.kill(int(status["pid"]), signal.SIGTERM)
        status = self._read(job_id)
        if status["state"] in ACTIVE:  # it may have finished in the meantime; keep that
            status = self._update(job_id, state="cancelled", ended=time.time())
        return status

    def recover(self) -> None:
        """Mark jobs whose process is gone (server restart, crash) as interrupted."""
        for d in self.dir.iterdir():
            if not (d / STATUS).is_file() or d.name in self._procs:
                continue
            status = self._read(d.name)
            if status["state"] in ACTIVE and not _alive(status.get("pid")):
                self._update(
                    d.name,
                    state="interrupted",
                    ended=time.time(),
                    error="the server stopped while the job ran; finished stages' checkpoints remain",
                )

    def evaluate(self, model: str, data: list[Any], check: Callable[[], None] | None = None) -> dict[str, Any]:
        """Retrieval metrics of a model on confined caption files (runs in the caller's thread). Sets larger
        than `max_eval_clips` are refused before the model loads; `check` stops the work between batches."""
        from audiosearch.models import load_encoder
        from audiosearch.training.evaluation import evaluate_rows
        from audiosearch.training.run import stage_rows

        name = parse_model(model, self.data_root, "eval", self.data_root, self.dir)
        specs = parse_data_specs(data, self.data_root, "eval", self.data_root)
        for spec in specs:
            if spec.csv.stat().st_size > MAX_EVAL_FILE_BYTES:
                raise InvalidInputError(
                    f"{spec.csv.name}: larger than {MAX_EVAL_FILE_BYTES >> 20} MB; evaluate it with `audiosearch eval`"
                )
        rows = [stage_rows([spec], self.data_root) for spec in specs]
        clips = sum(len({row.clip_id for row in spec_rows}) for spec_rows in rows)
        if clips > self.max_eval_clips:
            raise InvalidInputError(
                f"{clips} clips to evaluate; the service evaluates at most {self.max_eval_clips} "
                "(AUDIOSEARCH_MAX_EVAL_CLIPS): use `audiosearch eval` for larger sets"
            )
        loaded = load_encoder(name)
        results = {}
        for spec, spec_rows in zip(specs, rows, strict=True):
            m = evaluate_rows(loaded, spec_rows, check=check)
            results[str(spec.csv.relative_to(self.data_root))] = m
        return {"model": loaded.fingerprint, "results": results}

    def _read(self, job_id: str) -> dict[str, Any]:
        # ids are generated hex; anything else (e.g. '..') is not a job, never a path
        if not job_id.isalnum() or not (self.dir / job_id / STATUS).is_file():
            raise JobNotFoundError(f"no training job {job_id!r}")
        return json.loads((self.dir / job_id / STATUS).read_text())

    def _update(self, job_id: str, **changes: Any) -> dict[str, Any]:
        status = {**self._read(job_id), **changes}
        atomic_write_json(self.dir / job_id / STATUS, status)
        return status


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else (a reused pid): not our job
        return False
    return True


def run_job(job_dir: str, data_root: str, threads: int) -> None:
    """The child process: run the job's config, keeping status.json current after every epoch."""
    import torch

    from audiosearch.training.run import run_training

    job = Path(job_dir)
    torch.set_num_threads(threads)
    handler = logging.FileHandler(job / "log.txt")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    status = json.loads((job / STATUS).read_text())
    status.update(state="running", pid=os.getpid(), started=time.time())
    atomic_write_json(job / STATUS, status)

    def progress(event: dict[str, Any]) -> None:
        status.update({k: event.get(k) for k in ("stage", "epoch", "epochs", "step", "loss", "lr", "temperature")})
        status["metrics"] = event["metrics"]
        atomic_write_json(job / STATUS, status)

    try:
        root = Path(data_root)
        cfg = parse_run_config(json.loads((job / CONFIG).read_text()), job, str(job / CONFIG), root, job.parent)
        result = run_training(cfg, progress, read_root=root)
        status.update(state="finished", model=str(result.model_dir), ended=time.time())
    except Exception as err:  # the job's failure is data for the status, not a crash of anything else
        logging.getLogger(__name__).exception("training job failed")
        status.update(
            state="failed",
            ended=time.time(),
            error=str(err) if isinstance(err, AudioSearchError) else f"{type(err).__name__}: {err}",
        )
    atomic_write_json(job / STATUS, status)
