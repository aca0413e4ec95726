"""Liveness, readiness, Prometheus metrics and index information."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from audiosearch.app.api.deps import ServiceDep
from audiosearch.app.schemas import IndexInfo

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is up")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="The model and an index are loaded (and, under --ray, every shard of it)")
def readyz(request: Request) -> JSONResponse:
    """503 until the model and index load; under `serve --ray` also while any shard actor of the live snapshot
    does not answer (each listed: rows held, node, ready). `replica` names the process that answered."""
    service = getattr(request.app.state, "service", None)
    if service is None:
        return JSONResponse({"status": "loading", "detail": request.app.state.load_error or "starting"}, 503)
    body = {"status": "ready", "snapshot": service.searcher.snapshot.name}
    replica = getattr(request.app.state, "replica", None)
    if replica:
        body["replica"] = replica
    sharded = service.searcher.sharded
    if sharded is None:
        return JSONResponse(body)
    shards = sharded.status()
    down = [s for s in shards if not s["ready"]]
    body["shards"] = shards
    if down:
        why = "; ".join(f"shard {s['shard']}/{s['shards']}: {s.get('detail', 'not ready')}" for s in down)
        return JSONResponse({**body, "status": "shards not ready", "detail": why}, 503)
    return JSONResponse(body)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(request: Request) -> Response:
    body, content_type = request.app.state.metrics.render(getattr(request.app.state, "service", None))
    return Response(body, media_type=content_type)


@router.get("/index", response_model=IndexInfo, summary="The live index: manifest and counts")
def index_info(service: ServiceDep) -> IndexInfo:
    return IndexInfo.of(service.index_dir, service.searcher)
