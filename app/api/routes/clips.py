"""Clip metadata and audio streaming (HTTP range requests via FileResponse)."""

from __future__ import annotations

import dataclasses
import mimetypes
from typing import Annotated

from fastapi import APIRouter, Path, Request, Response
from fastapi.responses import FileResponse

from audiosearch.app.api.deps import ServiceDep
from audiosearch.app.schemas import CLIPS_PREFIX, ClipInfo, ClipPeaks, ClipWords, ErrorResponse

router = APIRouter(
    prefix=CLIPS_PREFIX, tags=["clips"], responses={404: {"model": ErrorResponse}, 422: {"model": ErrorResponse}}
)
# File ids are SQLite row ids: positive 64-bit integers. Larger ones are a 422, never an overflow inside SQLite.
ClipId = Annotated[int, Path(ge=1, le=2**63 - 1, description="clip (file) id from a search result")]

CONTENT_TYPES = {
    ".ogg": "audio/ogg",
    ".oga": "audio/ogg",
    ".opus": "audio/ogg",
    ".flac": "audio/flac",
    ".wav": "audio/wav",
    ".mp3": "audio/mpeg",
    ".m4a": "audio/mp4",
    ".aif": "audio/aiff",
    ".aiff": "audio/aiff",
}


@router.get("/{clip_id}", response_model=ClipInfo, summary="Metadata of one indexed file")
def clip_info(request: Request, clip_id: ClipId, service: ServiceDep) -> ClipInfo:
    c = service.clip(clip_id)
    w = service.clip_words(clip_id)
    words = ClipWords(path=list(w.path), tags=list(w.tags), fields=w.fields) if w is not None else None
    return ClipInfo(
        **dataclasses.asdict(c), audio_url=str(request.url_for("clip_audio", clip_id=c.id).path), words=words
    )


@router.get(
    "/{clip_id}/peaks",
    response_model=ClipPeaks,
    summary="The file's waveform outline (peaks), for drawing it",
    description="Stored at index time; for files indexed before that, computed from the file on first request "
    "(up to 30 minutes long) and kept in the server's memory.",
)
def clip_peaks(clip_id: ClipId, service: ServiceDep) -> Response:
    c = service.clip(clip_id)
    peaks, source = service.clip_peaks(clip_id)
    body = ClipPeaks(id=c.id, duration=c.duration, peaks=peaks, source=source)
    # keyed by content: a changed file under the same id gets new peaks
    return Response(body.model_dump_json(), media_type="application/json", headers={"ETag": f'"{c.sha1}"'})


@router.get(
    "/{clip_id}/audio",
    name="clip_audio",
    summary="The audio file itself (supports Range requests)",
    response_class=FileResponse,
)
def clip_audio(clip_id: ClipId, service: ServiceDep) -> FileResponse:
    path = service.clip_file(clip_id)
    media = CONTENT_TYPES.get(path.suffix.lower()) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return FileResponse(path, media_type=media, headers={"Cache-Control": "public, max-age=3600"})
