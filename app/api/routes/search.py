"""Text search (GET and POST), batch search and query by example."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, File, HTTPException, Query, Request, Response, UploadFile
from pydantic import BaseModel

from audiosearch.app.api.deps import BatcherDep, ServiceDep, SettingsDep
from audiosearch.app.api.routes.clips import audio_path
from audiosearch.app.cancel import run_cancellable
from audiosearch.app.limits import limited
from audiosearch.app.schemas import (
    MAX_QUERY_CHARS,
    MIN_SCORE_HELP,
    MODE_HELP,
    AudioQuery,
    AudioSearchResponse,
    BatchSearchRequest,
    BatchSearchResponse,
    ErrorResponse,
    Evidence,
    SearchFilters,
    SearchHit,
    SearchMode,
    SearchRequest,
    SearchResponse,
    WindowScore,
    clean_query,
)
from audiosearch.indexer import Page
from audiosearch.models import AUDIO_EXTENSIONS

router = APIRouter(tags=["search"], responses={422: {"model": ErrorResponse}, 409: {"model": ErrorResponse}})


def _response(request: Request, query: str, page: Page, t0: float) -> SearchResponse:
    root = request.scope.get("root_path", "")  # a path prefix set by a reverse proxy, as url_for would add
    hits = [
        SearchHit(
            id=h.file_id,
            path=h.path,
            score=round(h.score, 6),
            relevance=h.relevance,
            start=h.start,
            end=h.end,
            duration=h.duration,
            audio_url=root + audio_path(h.file_id),  # not url_for: it tries every route, per hit
            evidence=Evidence(
                audio=h.evidence.audio, text=h.evidence.text, lexical=h.evidence.lexical, words=list(h.evidence.words)
            )
            if h.evidence
            else None,
            windows=[WindowScore(start=a, end=b, score=v) for a, b, v in h.windows],
        )
        for h in page.hits
    ]
    took = round((time.perf_counter() - t0) * 1e3, 3)
    return SearchResponse(
        query=query,
        results=hits,
        total=page.total,
        took_ms=took,
        mode=page.mode,
        min_score=page.min_score,
        no_close_match=not page.close_match,
    )


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
    k: Annotated[int, Query(ge=1, le=100)] = 10,
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
    k: Annotated[int, Query(ge=1, le=100)] = 10,
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
