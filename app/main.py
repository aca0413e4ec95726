"""`create_app(settings)`: the FastAPI application. Model and index load in the lifespan, not at import."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from audiosearch.app.api.routes import admin, clips, health, search, training
from audiosearch.app.batcher import QueryBatcher
from audiosearch.app.cancel import CLIENT_GONE
from audiosearch.app.limits import JsonTooLarge, make_limits
from audiosearch.app.metrics import Metrics, MetricsMiddleware
from audiosearch.app.search_service import SearchService
from audiosearch.app.settings import Settings
from audiosearch.app.watcher import IndexWatcher
from audiosearch.core.errors import Cancelled
from audiosearch.indexer import IndexBuildError, IndexCorruptError, IndexMismatchError, IndexNotFoundError
from audiosearch.models import AudioDecodeError, AudioSearchError, Encoder, InvalidInputError, ModelLoadError

if TYPE_CHECKING:
    from audiosearch.indexer.search.shards import ShardSource

log = logging.getLogger(__name__)
STATIC = Path(__file__).resolve().parent / "static"
# Swagger UI and ReDoc, served from the installed `fastapi-offline` package (MIT; it ships swagger-ui-dist,
# Apache-2.0, and redoc's standalone bundle, MIT) instead of FastAPI's default CDN, so /docs works offline.
DOCS_ASSETS_URL = "/docs-assets"
UPLOAD_OVERHEAD = 64 * 1024  # multipart boundaries and part headers around the uploaded file

STATUS = {  # one place that maps domain errors to HTTP
    InvalidInputError: 422,
    AudioDecodeError: 422,
    IndexBuildError: 422,
    IndexNotFoundError: 404,
    IndexMismatchError: 409,
    IndexCorruptError: 503,
    ModelLoadError: 503,
}


def create_app(
    settings: Settings | None = None, model: Encoder | None = None, shards: ShardSource | None = None
) -> FastAPI:
    """Build the app; pass `model` to share an already loaded model (tests, several apps per process), `shards`
    to search a sharded index (`serve --ray`: audiosearch.indexer.search.ray_shards)."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(_load, app, settings, model, shards)
        watcher = _watch(app, settings)
        yield
        if watcher is not None:
            watcher.stop()
        if app.state.batcher is not None:
            await app.state.batcher.close()

    # One file per upload: many tiny files in one form would each be spooled and parsed for nothing.
    app = FastAPI(
        title="audiosearch",
        version="0.1.0",
        lifespan=lifespan,
        description="Text-to-audio retrieval: search an indexed audio library with natural language.",
        form_limits={"max_files": 1, "max_fields": 4},
        docs_url=None,  # replaced by _docs_routes: the same pages with their assets served from here
        redoc_url=None,
    )
    app.state.settings, app.state.service, app.state.load_error = settings, None, None
    app.state.batcher = None
    app.state.replica = None  # `serve --ray` names its replicas ("1/2"): /readyz says which answered
    app.state.metrics = Metrics()
    app.state.limits = make_limits(settings)
    # Body caps per router (inside the middleware stack, so JsonTooLarge sees their 413s): JSON routes take
    # max_body_bytes, the upload route its cap plus the multipart framing.
    for router in (search.router, clips.router, health.router, admin.router, training.router):
        app.include_router(router, max_body_size=settings.max_body_bytes)
    upload_cap = settings.max_upload_bytes + UPLOAD_OVERHEAD
    app.include_router(search.upload_router, max_body_size=upload_cap)
    app.add_middleware(
        JsonTooLarge, upload_path="/search/by-audio", upload_limit=upload_cap, limit=settings.max_body_bytes
    )
    _static_routes(app)
    _docs_routes(app)
    _error_handlers(app)
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Content-Type"],
            max_age=600,
        )
    return app


def _load(app: FastAPI, settings: Settings, model: Encoder | None, shards: ShardSource | None = None) -> None:
    """A broken index keeps the process up and /readyz at 503 with the reason, instead of a crash loop."""
    from audiosearch.core.device import resolve_device
    from audiosearch.core.threads import configure_threads
    from audiosearch.models import load_encoder
    from audiosearch.models.provenance import require_trained

    if settings.train_data_root is not None:
        from audiosearch.app.api.routes.training import job_manager

        # Made now, not on the first /train request, so jobs a previous server left running show as interrupted.
        app.state.jobs = job_manager(settings, settings.train_data_root)
    try:
        if model is None and not settings.allow_untrained:
            require_trained(settings.model)  # random projections would answer every query with noise
        device = resolve_device(settings.device)
        model = model or load_encoder(settings.model, device, settings.onnx_dir, threads=settings.threads)
        configure_threads(settings.threads or None)  # after the load: a torch model's pool is sized too
        service = SearchService(model, settings.index_dir, settings.query_cache_size, settings.mmap, device, shards)
        app.state.batcher = QueryBatcher(
            service.search_batch, settings.batch_max_size, settings.batch_max_wait_ms, app.state.metrics.observe_batch
        )
        app.state.service = service
    except AudioSearchError as err:
        app.state.load_error = str(err)
        log.error("not ready: %s", err)


def _watch(app: FastAPI, settings: Settings) -> IndexWatcher | None:
    if app.state.service is None or settings.watch_index_s <= 0:
        return None
    return IndexWatcher(app.state.service, settings.watch_index_s).start()


def _static_routes(app: FastAPI) -> None:
    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/widget.js", include_in_schema=False)
    def widget() -> FileResponse:
        return FileResponse(STATIC / "widget.js", media_type="text/javascript")


def docs_assets_dir() -> Path:
    """The folder holding swagger-ui-bundle.js, swagger-ui.css, redoc.standalone.js and favicon.png."""
    from importlib.util import find_spec

    spec = find_spec("fastapi_offline")
    if spec is None or spec.origin is None:  # a base dependency; only a broken install gets here
        raise ModuleNotFoundError("fastapi-offline is not installed: /docs and /redoc need its assets")
    return Path(spec.origin).parent / "static"


def _docs_routes(app: FastAPI) -> None:
    """/docs (Swagger UI) and /redoc with every script, stylesheet and icon served by the app itself."""
    app.mount(DOCS_ASSETS_URL, StaticFiles(directory=docs_assets_dir()), name="docs-assets")
    oauth2_redirect = app.swagger_ui_oauth2_redirect_url or "/docs/oauth2-redirect"

    @app.get("/docs", include_in_schema=False)
    def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=f"{root}{oauth2_redirect}",
            swagger_js_url=f"{root}{DOCS_ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{DOCS_ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{DOCS_ASSETS_URL}/favicon.png",
            # no badge that sends the schema to validator.swagger.io
            swagger_ui_parameters={**(app.swagger_ui_parameters or {}), "validatorUrl": None},
        )

    @app.get(oauth2_redirect, include_in_schema=False)
    def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{DOCS_ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{DOCS_ASSETS_URL}/favicon.png",
            with_google_fonts=False,
        )


def _error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AudioSearchError)
    async def domain_error(request: Request, err: AudioSearchError) -> JSONResponse:
        status = next((code for cls, code in STATUS.items() if isinstance(err, cls)), 400)
        return JSONResponse({"detail": str(err)}, status_code=status)

    @app.exception_handler(Cancelled)
    async def client_gone(request: Request, err: Cancelled) -> Response:
        return Response(status_code=CLIENT_GONE)  # nobody reads it; the metrics count it apart from errors

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, err: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _validation_message(err)}, status_code=422)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, err: Exception) -> JSONResponse:
        log.exception("unhandled error on %s", request.url.path)
        return JSONResponse({"detail": "internal error"}, status_code=500)


def _validation_message(err: RequestValidationError) -> str:
    """One readable line, e.g. "query.k: Input should be less than or equal to 100"."""
    parts = []
    for e in err.errors()[:3]:
        where = ".".join(str(x) for x in e.get("loc", ()) if x != "body")
        msg = str(e.get("msg", "invalid")).removeprefix("Value error, ")
        parts.append(f"{where}: {msg}" if where else msg)
    return "; ".join(parts)
