"""The ASGI application: the web page, the JSON API, the OpenAI-compatible route, and what runs behind them.

``create_app(settings)`` loads the model and the index once; ``create_app(settings, qa)`` serves a DocQA the
caller made (tests). The generation queue, the builder and the data-folder watcher start with the app and stop
with it.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Optional

from docqa.errors import ConfigError, DocqaError, IndexNotFoundError
from docqa.qa import DocQA
from docqa.server.builds import Builder, Watcher
from docqa.server.engine import Engine
from docqa.server.errors import UnexpectedErrors, error_body, error_status, is_openai_route, unexpected
from docqa.server.limits import BodyLimit
from docqa.server.queue import GenerationQueue, QueueFullError
from docqa.server.security import Security, check_cors
from docqa.settings import Settings

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"

def create_app(
    settings: Settings,
    qa: Optional[DocQA] = None,
    *,
    token: Optional[str] = None,
    retrieval_only: bool = False,
    watch: Optional[bool] = None,
):
    """The app; ``token``: the API token every /api and /v1 request must bear (None: no check);
    ``watch``: index changes to the data folder as they happen (default: ``serve.watch``)."""
    from fastapi import FastAPI

    from docqa.server import api, chat

    check_cors(settings.serve.cors_origins, token, settings.serve.token_env)  # before the model loads for minutes
    settings = settings.advised_to_clients()
    engine = Engine(settings, qa, retrieval_only=retrieval_only)
    queue = GenerationQueue(settings.serve.max_waiting)
    builder = Builder(settings, on_changed=engine.reload)
    engine.building = lambda: builder.busy
    watcher = Watcher(builder, settings.serve.watch_interval) if (settings.serve.watch if watch is None else watch) else None

    @asynccontextmanager
    async def lifespan(app):
        queue.start()
        builder.start()
        if watcher:
            watcher.start()
        try:
            yield
        finally:
            if watcher:
                watcher.close()
            queue.close()
            builder.close()
            engine.close()

    app = FastAPI(
        title="docqa",
        summary="Questions about your PDF documents, answered from them with the pages they came from.",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,  # served from the package's own copy of Swagger UI: no CDN
        redoc_url=None,
    )
    # swagger-ui-bundle's Swagger UI (4.15) reads OpenAPI 3.0 documents only; nothing this API describes needs 3.1.
    app.openapi_version = "3.0.3"
    app.state.settings = settings
    app.state.engine = engine
    app.state.queue = queue
    app.state.builder = builder
    app.state.watcher = watcher
    _error_handlers(app)
    app.include_router(api.router)
    app.include_router(chat.router)
    _pages(app)
    if token:
        _describe_the_token(app)
    app.add_middleware(UnexpectedErrors)  # the first added is the innermost
    app.add_middleware(BodyLimit)
    app.add_middleware(Security, token=token)  # who may ask comes before anything else the app does
    origins = settings.serve.cors_origins
    if origins:
        from starlette.middleware.cors import CORSMiddleware

        # Outermost: a browser's preflight carries no token, so it is answered before the token check. The token
        # then guards every real request; no cookie authenticates anyone, so credentials stay off.
        # Any request header: OpenAI's JavaScript client sends X-Stainless-* headers of its own with every request.
        # Private network: Chrome asks before a page on the internet (a hosted chat front end) calls a server on this
        # machine or the LAN, which is what listing that origin here allows; without it the preflight was a 400.
        app.add_middleware(CORSMiddleware, allow_origins=origins, allow_methods=["GET", "POST", "DELETE"],
                           allow_headers=["*"], expose_headers=["x-should-retry", "retry-after"],
                           allow_private_network=True, max_age=600)
    return app


def _error_handlers(app) -> None:
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    # Starlette's, which FastAPI's subclasses: the router's own 405 and the like are raised as this one.
    from starlette.exceptions import HTTPException

    def failure(request, message: str, status: int, headers=None):
        return JSONResponse(error_body(request.url.path, message, status), status_code=status, headers=headers)

    @app.exception_handler(DocqaError)
    async def domain_error(request, error: DocqaError):
        # OpenAI's clients retry any 5xx unless told. No retry can change the server's settings, nor an answer from
        # a server that has no index and builds none (a build under way may give one by the retry).
        hopeless = isinstance(error, ConfigError) or (
            isinstance(error, IndexNotFoundError) and not request.app.state.builder.busy)
        headers = {"x-should-retry": "false"} if hopeless else None
        if isinstance(error, QueueFullError):
            headers = {"retry-after": str(error.retry_after)}
        return failure(request, str(error), error_status(error), headers)

    @app.exception_handler(HTTPException)
    async def http_error(request, error: HTTPException):
        return failure(request, str(error.detail), error.status_code, error.headers)

    @app.exception_handler(404)
    async def not_found(request, error):
        detail = getattr(error, "detail", None)  # a route's own reason, or the router's bare "Not Found"
        return failure(request, detail if detail and detail != "Not Found" else f"not found: {request.url.path}", 404)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request, error: RequestValidationError):
        # OpenAI answers a malformed request with 400; the page's routes keep FastAPI's 422.
        return failure(request, describe_validation(error), 400 if is_openai_route(request.url.path) else 422)

    @app.exception_handler(Exception)
    async def unforeseen(request, error: Exception):  # in a middleware itself; the app's own go to UnexpectedErrors
        log.exception("unexpected error on %s", request.url.path)
        return failure(request, unexpected(error), 500)


def _describe_the_token(app) -> None:
    """The API document says its routes want the bearer token, so that /docs offers to send it ("Authorize");
    without that, every "Try it out" got 401."""
    from docqa.server.security import PROTECTED_PREFIXES

    generate = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = generate()
            schema.setdefault("components", {})["securitySchemes"] = {
                "token": {"type": "http", "scheme": "bearer", "description": "The server's API token."}}
            for path, operations in schema["paths"].items():
                if path.startswith(PROTECTED_PREFIXES):
                    for operation in operations.values():
                        operation["security"] = [{"token": []}]
        return app.openapi_schema

    app.openapi = openapi


def describe_validation(error) -> str:
    """The first problem of a rejected request, in one line."""
    first = error.errors()[0]
    where = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
    if first.get("type") == "json_invalid":  # FastAPI's own words were "13: JSON decode error"
        return f"the body is not valid JSON ({first.get('ctx', {}).get('error', 'decode error')})"
    if not where and first.get("type") in ("model_attributes_type", "dict_type"):
        # JSON sent as text/plain, or without a content type, reaches the route as a string
        return "the body must be a JSON object, sent with Content-Type: application/json"
    return f"{where}: {first.get('msg', 'invalid')}" if where else first.get("msg", "invalid request")


def _pages(app) -> None:
    """The web page, its static files, and the API documentation, all from this package (nothing from a CDN)."""
    from fastapi.responses import FileResponse
    from fastapi.staticfiles import StaticFiles

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def index():
        return FileResponse(STATIC / "index.html", headers={"cache-control": "no-cache"})

    swagger = _swagger_assets()
    if swagger is not None:
        app.mount("/docs-assets", StaticFiles(directory=swagger), name="docs-assets")

        @app.get("/docs", include_in_schema=False)
        def docs():
            return FileResponse(STATIC / "docs.html", headers={"cache-control": "no-cache"})


def _swagger_assets() -> Optional[Path]:
    try:
        import swagger_ui_bundle
    except ImportError:
        return None
    return Path(swagger_ui_bundle.swagger_ui_path)
