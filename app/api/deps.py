"""Dependencies shared by the routes: the live search service, settings, admin auth.

They are `async def` although they never await: FastAPI runs a plain `def` dependency in its thread pool, a
thread hop per request that cost the text search path about a fifth of its throughput."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request

from audiosearch.app.batcher import QueryBatcher
from audiosearch.app.search_service import SearchService
from audiosearch.app.settings import Settings


async def get_service(request: Request) -> SearchService:
    service = getattr(request.app.state, "service", None)
    if service is None:
        raise HTTPException(503, "the index is not loaded yet")
    return service


async def get_batcher(request: Request) -> QueryBatcher:
    await get_service(request)  # the batcher exists once the service does
    return request.app.state.batcher


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def require_admin(request: Request, settings: Annotated[Settings, Depends(get_settings)]) -> None:
    if not settings.admin_token:
        raise HTTPException(403, "admin routes are disabled (set AUDIOSEARCH_ADMIN_TOKEN to enable them)")
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    # compare_digest: the comparison takes the same time however many leading characters match
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.encode(), settings.admin_token.encode()):
        raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})


ServiceDep = Annotated[SearchService, Depends(get_service)]
BatcherDep = Annotated[QueryBatcher, Depends(get_batcher)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
AdminDep = Depends(require_admin)
