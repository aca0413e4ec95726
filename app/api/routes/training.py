"""Training and evaluation jobs (admin token): start, watch, cancel; evaluate a model on caption files.

Handlers are thin: app.jobs.JobManager validates configs and owns the child processes. Training never
runs in this process; evaluation runs in the threadpool, off the event loop.
"""

from __future__ import annotations

import threading
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from app.api.deps import AdminDep, SettingsDep
from app.jobs import JobManager, JobNotFoundError
from app.schemas import ErrorResponse

router = APIRouter(tags=["training"], dependencies=[AdminDep],
                   responses={401: {"model": ErrorResponse}, 403: {"model": ErrorResponse},
                              422: {"model": ErrorResponse}})
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
            request.app.state.jobs = JobManager(settings.jobs_dir, settings.train_data_root)
    return request.app.state.jobs


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
    return JobId(id=jobs.submit(config))


@router.get("/train", summary="All training jobs, oldest first")
def list_jobs(jobs: JobsDep) -> list[dict[str, Any]]:
    return jobs.list()


@router.get("/train/{job_id}", summary="A job's state, stage, epoch, loss, last metrics, error")
def job_status(job_id: JobDep, jobs: JobsDep) -> dict[str, Any]:
    return jobs.status(job_id)


@router.delete("/train/{job_id}", summary="Cancel a job (its finished stages' checkpoints remain)")
def cancel(job_id: JobDep, jobs: JobsDep) -> dict[str, Any]:
    return jobs.cancel(job_id)


@router.post("/eval", summary="Retrieval metrics (mAP@10, R@k) of a model on caption files")
async def evaluate(body: EvalRequest, jobs: JobsDep) -> dict[str, Any]:
    return await run_in_threadpool(jobs.evaluate, body.model, body.data)
