"""Training and evaluation jobs (admin token): start, watch, cancel; evaluate a model on caption files.

Handlers are thin: audiosearch.app.jobs.JobManager validates configs and owns the child processes. Training never
runs in this process; evaluation runs in the threadpool, off the event loop.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Request
from pydantic import BaseModel, Field

from audiosearch.app.api.deps import AdminDep, SettingsDep
from audiosearch.app.cancel import run_cancellable
from audiosearch.app.jobs import JobLimitError, JobManager, JobNotFoundError
from audiosearch.app.limits import limited
from audiosearch.app.schemas import ErrorResponse
from audiosearch.app.settings import Settings

router = APIRouter(
    tags=["training"],
    dependencies=[AdminDep],
    responses={
        401: {"model": ErrorResponse},
        403: {"model": ErrorResponse},
        422: {"model": ErrorResponse},
        429: {"model": ErrorResponse},
    },
)
TRAIN_RETRY_AFTER_S = 60
_create_lock = threading.Lock()


class JobId(BaseModel):
    id: str


class EvalRequest(BaseModel):
    model: str = Field(description="profile name, or a model directory under the data root or jobs directory")
    data: list[dict[str, Any]] = Field(description="caption files: [{csv, audio_root?, caption_column?}]")


def get_jobs(request: Request, settings: SettingsDep) -> JobManager:
    """One manager per app, made on first use; making it marks jobs a previous server left as interrupted."""
    if settings.train_data_root is None:
        raise HTTPException(403, "training routes are disabled (set AUDIOSEARCH_TRAIN_DATA_ROOT to enable them)")
    with _create_lock:
        if getattr(request.app.state, "jobs", None) is None:
            request.app.state.jobs = job_manager(settings, settings.train_data_root)
    return request.app.state.jobs


def job_manager(settings: Settings, data_root: Path) -> JobManager:
    return JobManager(
        settings.jobs_dir, data_root, max_jobs=settings.max_training_jobs, max_eval_clips=settings.max_eval_clips
    )


JobsDep = Annotated[JobManager, Depends(get_jobs)]


def existing_job(job_id: str, jobs: JobsDep) -> str:
    try:
        jobs.status(job_id)
    except JobNotFoundError as err:
        raise HTTPException(404, str(err)) from None
    return job_id


JobDep = Annotated[str, Depends(existing_job)]


@router.post("/train", response_model=JobId, status_code=202, summary="Start a training run (a run config as JSON)")
def start(jobs: JobsDep, config: Annotated[dict[str, Any], Body()]) -> JobId:
    try:
        return JobId(id=jobs.submit(config))
    except JobLimitError as err:
        raise HTTPException(429, str(err), headers={"Retry-After": str(TRAIN_RETRY_AFTER_S)}) from None


@router.get("/train", summary="All training jobs, oldest first")
def list_jobs(jobs: JobsDep) -> list[dict[str, Any]]:
    return jobs.list()


@router.get("/train/{job_id}", summary="A job's state, stage, epoch, loss, last metrics, error")
def job_status(job_id: JobDep, jobs: JobsDep) -> dict[str, Any]:
    return jobs.status(job_id)


@router.delete("/train/{job_id}", summary="Cancel a job (its finished stages' checkpoints remain)")
def cancel(job_id: JobDep, jobs: JobsDep) -> dict[str, Any]:
    return jobs.cancel(job_id)


@router.post(
    "/eval", summary="Retrieval metrics (mAP@10, R@k) of a model on caption files", dependencies=[limited("eval")]
)
async def evaluate(request: Request, body: EvalRequest, jobs: JobsDep) -> dict[str, Any]:
    return await run_cancellable(request, jobs.evaluate, body.model, body.data)
