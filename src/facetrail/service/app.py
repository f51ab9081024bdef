"""The FastAPI application factory. ``facetrail serve`` runs it under uvicorn."""

from __future__ import annotations

import importlib
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

import facetrail
from facetrail.context import AppContext, open_context
from facetrail.errors import AuthenticationError, FaceTrailError
from facetrail.oversight.guard import install as install_oversight
from facetrail.service.errors import error_body, status_for
from facetrail.service.middleware import AuditContextMiddleware, BodyLimitMiddleware, SecurityHeadersMiddleware

log = logging.getLogger(__name__)

# Routers, each ``router`` (an APIRouter) in its own module under facetrail.service.api / facetrail.web.
API_MODULES = (
    "auth",
    "identity",
    "users",
    "galleries",
    "faces",
    "searches",
    "audit",
    "system",
    "reports",
    "retention",
    "governance",
    "oversight",
)
WEB_MODULE = "facetrail.web.routes"


def _wants_html(request: Request) -> bool:
    return not request.url.path.startswith("/api/") and "text/html" in request.headers.get("accept", "")


def create_app(ctx: AppContext | None = None) -> FastAPI:
    ctx = ctx or open_context()
    app = FastAPI(
        title="FaceTrail",
        version=facetrail.__version__,
        description="Accountable face search. Search results are investigative leads, never identifications.",
        openapi_url="/api/v1/openapi.json",
        docs_url="/api/docs",
        redoc_url=None,
    )
    app.state.ctx = ctx
    install_oversight()  # limits, case verification and anomaly detection on every search path
    app.add_middleware(AuditContextMiddleware)
    app.add_middleware(BodyLimitMiddleware, max_bytes=ctx.settings.server.max_upload_bytes)
    app.add_middleware(SecurityHeadersMiddleware)

    @app.exception_handler(FaceTrailError)
    async def facetrail_error(request: Request, exc: FaceTrailError) -> Response:
        status = status_for(exc)
        if _wants_html(request):
            if isinstance(exc, AuthenticationError) and request.method == "GET":
                return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
            return _html_error(request, status, exc.message)
        return JSONResponse(error_body(exc.code, exc.message, exc.details or None), status_code=status)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        problems = [
            {"field": ".".join(str(p) for p in err.get("loc", ())[1:]) or "body", "problem": err.get("msg", "")}
            for err in exc.errors()
        ]
        message = "; ".join(f"{p['field']}: {p['problem']}" for p in problems)[:500] or "invalid request"
        if _wants_html(request):
            return _html_error(request, 422, message)
        return JSONResponse(error_body("validation_error", message, {"problems": problems}), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        if _wants_html(request):
            return _html_error(request, exc.status_code, str(exc.detail))
        return JSONResponse(
            error_body(code, str(exc.detail)), status_code=exc.status_code, headers=getattr(exc, "headers", None)
        )

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)  # never sent to the client
        return JSONResponse(error_body("internal_error", "internal error; it has been logged"), status_code=500)

    for name in API_MODULES:
        module = _optional_module(f"facetrail.service.api.{name}")
        if module is not None:
            app.include_router(module.router, prefix="/api/v1")
    web = _optional_module(WEB_MODULE)
    if web is not None:
        web.mount(app)
    return app


def _optional_module(dotted: str) -> Any:
    try:
        return importlib.import_module(dotted)
    except ModuleNotFoundError as exc:
        if exc.name != dotted:
            raise
        return None


def _html_error(request: Request, status: int, message: str) -> Response:
    web = _optional_module(WEB_MODULE)
    if web is not None and hasattr(web, "render_error"):
        response: Response = web.render_error(request, status, message)
        return response
    from html import escape

    return Response(
        f"<!doctype html><title>Error {status}</title><h1>Error {status}</h1><p>{escape(message)}</p>",
        status_code=status,
        media_type="text/html",
    )
