"""Admin: switch to a rebuilt index without dropping requests. Needs the bearer token."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool

from audiosearch.app.api.deps import AdminDep, ServiceDep
from audiosearch.app.schemas import ErrorResponse, IndexInfo, ReloadRequest

router = APIRouter(
    prefix="/admin",
    tags=["admin"],
    dependencies=[AdminDep],
    responses={401: {"model": ErrorResponse}, 403: {"model": ErrorResponse}},
)


@router.post("/reload", response_model=IndexInfo, summary="Load the index's newest snapshot (or another index)")
async def reload(service: ServiceDep, body: ReloadRequest | None = None) -> IndexInfo:
    target = body.index_dir if body and body.index_dir else None
    return IndexInfo.of(service.index_dir, await run_in_threadpool(service.reload, target))
