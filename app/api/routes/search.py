"""Text search (GET and POST), batch search and query by example."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, File, HTTPException, Query, Request, Response, UploadFile
from pydantic import BaseModel

from audiosearch.app.api.deps import BatcherDep, ServiceDep, SettingsDep
from audiosearch.app.api.routes.clips import ClipId
from audiosearch.app.cancel import run_cancellable
from audiosearch.app.limits import limited
from audiosearch.app.schemas import (
    MAX_K,
    MAX_QUERY_CHARS,
    MIN_SCORE_HELP,
    MODE_HELP,
    AudioQuery,
    AudioSearchResponse,
    BatchSearchRequest,
    BatchSearchResponse,
    ErrorResponse,
    SearchFilters,
    SearchMode,
    SearchRequest,
    SearchResponse,
    audio_path,
    clean_query,
    like_query,
)
from audiosearch.indexer import Page
from audiosearch.models import AUDIO_EXTENSIONS

router = APIRouter(tags=["search"], responses={422: {"model": ErrorResponse}, 409: {"model": ErrorResponse}})


def _response(request: Request, query: str, page: Page, t0: float) -> SearchResponse:
    root = request.scope.get("root_path", "")  # a path prefix set by a reverse proxy, as url_for would add
    took = round((time.perf_counter() - t0) * 1e3, 3)
    # audio_path, not url_for: url_for tries every route, per hit
    return SearchResponse.of(query, page, took, lambda clip_id: root + audio_path(clip_id))


@router.get(
    "/search",
    response_model=SearchResponse,
    summary="Search by text",
    responses={429: {"model": ErrorResponse}},
    dependencies=[limited("search")],
)
async def search_get(
    request: Request,
    batcher: BatcherDep,
    q: Annotated[str, Query(min_length=1, max_length=MAX_QUERY_CHARS, description="text query")],
    k: Annotated[int, Query(ge=1, le=MAX_K)] = 10,
    offset: Annotated[int, Query(ge=0, le=10_000)] = 0,
    path_prefix: Annotated[str | None, Query(max_length=1024)] = None,
    min_duration: Annotated[float | None, Query(ge=0)] = None,
    max_duration: Annotated[float | None, Query(ge=0)] = None,
    mode: Annotated[SearchMode, Query(description=MODE_HELP)] = "hybrid",
    min_score: Annotated[float | None, Query(ge=-10, le=10, description=MIN_SCORE_HELP)] = None,
) -> Response:
    try:
        query = clean_query(q)
    except ValueError as err:
        raise HTTPException(422, str(err)) from None
    body = SearchRequest(
        query=query,
        k=k,
        offset=offset,
        mode=mode,
        min_score=min_score,
        filters=SearchFilters(path_prefix=path_prefix, min_duration=min_duration, max_duration=max_duration),
    )
    return await search_post(request, body, batcher)


@router.post(
    "/search",
    response_model=SearchResponse,
    summary="Search by text (JSON body, with filters)",
    responses={429: {"model": ErrorResponse}},
    dependencies=[limited("search")],
)
async def search_post(request: Request, body: SearchRequest, batcher: BatcherDep) -> Response:
    t0 = time.perf_counter()
    (page,) = await batcher.submit([body.query], [body.spec()])  # shares a forward and a search with other requests
    return _json(_response(request, body.query, page, t0))


def _json(model: BaseModel) -> Response:
    """The response, serialised once: returned as a model, FastAPI would validate it again against the
    response_model (which still documents it) before serialising (a tenth of the text search's CPU)."""
    return Response(model.model_dump_json(), media_type="application/json")


@router.post(
    "/search/batch",
    response_model=BatchSearchResponse,
    summary="Many text queries, encoded as one batch",
    responses={429: {"model": ErrorResponse}},
    dependencies=[limited("batch")],
)
async def search_batch(request: Request, body: BatchSearchRequest, batcher: BatcherDep) -> BatchSearchResponse:
    t0 = time.perf_counter()
    pages = await batcher.submit(body.queries, body.specs())
    return BatchSearchResponse(
        responses=[_response(request, q, p, t0) for q, p in zip(body.queries, pages, strict=True)],
        took_ms=round((time.perf_counter() - t0) * 1e3, 3),
    )


# Query by example: its own router, so the app gives it the upload's body cap (JSON routes get a small one).
upload_router = APIRouter(tags=["search"], responses={422: {"model": ErrorResponse}})


@upload_router.post(
    "/search/by-audio",
    response_model=AudioSearchResponse,
    summary="Query by example: clips similar to an upload",
    description="Uses the first AUDIOSEARCH_MAX_QUERY_SECONDS (default 30) of the upload; the response says how much.",
    responses={413: {"model": ErrorResponse}, 415: {"model": ErrorResponse}, 429: {"model": ErrorResponse}},
    dependencies=[limited("by_audio")],
)
async def search_by_audio(
    request: Request,
    service: ServiceDep,
    settings: SettingsDep,
    file: Annotated[UploadFile, File(description="an audio file (wav, flac, ogg, mp3, ...)")],
    k: Annotated[int, Query(ge=1, le=MAX_K)] = 10,
    offset: Annotated[int, Query(ge=0, le=10_000)] = 0,
) -> AudioSearchResponse:
    t0 = time.perf_counter()
    suffix = Path(file.filename or "").suffix.lower()
    if suffix not in AUDIO_EXTENSIONS:
        raise HTTPException(415, f"unsupported file type {suffix or '(none)'}; send one of {sorted(AUDIO_EXTENSIONS)}")
    size = file.size if file.size is not None else len(await file.read(settings.max_upload_bytes + 1))
    if size > settings.max_upload_bytes:
        raise HTTPException(413, f"upload larger than {settings.max_upload_bytes} bytes")
    if size == 0:
        raise HTTPException(422, "the uploaded file is empty")
    await file.seek(0)
    # the spooled upload (on disk past 1 MB) is handed over as a file: never held in memory whole
    page, read = await run_cancellable(
        request, service.search_audio, file.file, suffix, k, offset, max_seconds=settings.max_query_seconds
    )
    base = _response(request, f"<audio:{file.filename}>", page, t0)
    audio = AudioQuery(seconds=round(read.seconds, 3), truncated=read.truncated, max_seconds=settings.max_query_seconds)
    return AudioSearchResponse(**base.model_dump(), audio=audio)


SIMILAR_HELP = """Ranks the library by the clip's own stored vectors (nothing is decoded): the clip itself first,
whatever its score, then the closest other files, best window each, as `GET /search` lists them (`query` is
`<like:PATH>`).

The query is the mean of the clip's windows, normalised (the whole clip), or with `start` the one window that holds
that moment (0 <= start < the clip's duration; 422 otherwise). The ranking is by audio only: `mode` accepts `audio`
(hybrid and text rank by words, and the query has none: 422). An unknown clip id is a 404."""


@router.get(
    "/clips/{clip_id}/similar",
    response_model=SearchResponse,
    summary="More like this: files that sound like an indexed clip",
    description=SIMILAR_HELP,
    tags=["clips"],
    responses={404: {"model": ErrorResponse}, 429: {"model": ErrorResponse}},
    dependencies=[limited("search")],
)
def search_similar(
    request: Request,
    service: ServiceDep,
    clip_id: ClipId,
    k: Annotated[int, Query(ge=1, le=MAX_K)] = 10,
    offset: Annotated[int, Query(ge=0, le=10_000)] = 0,
    mode: Annotated[str, Query(max_length=16, description="audio (the only ranking of a sound by a sound)")] = "audio",
    start: Annotated[float | None, Query(description="seconds: the window of the clip to query with")] = None,
) -> Response:
    t0 = time.perf_counter()
    clip, page = service.similar(clip_id, k, offset, start, mode)
    return _json(_response(request, like_query(clip.path), page, t0))
