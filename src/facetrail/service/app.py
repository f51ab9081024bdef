"""The FastAPI application factory. ``facetrail serve`` runs it under uvicorn."""

from __future__ import annotations

import logging
from typing import Protocol

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

import facetrail
from facetrail.context import AppContext, open_context
from facetrail.errors import AuthenticationError, FaceTrailError, InvalidRequestError
from facetrail.oversight.guard import install as install_oversight
from facetrail.service.api import (
    audit,
    auth,
    enhancements,
    examinations,
    faces,
    galleries,
    governance,
    identity,
    leads,
    oversight,
    reports,
    retention,
    searches,
    system,
    users,
)
from facetrail.service.errors import error_body, status_for
from facetrail.service.middleware import AuditContextMiddleware, BodyLimitMiddleware, SecurityHeadersMiddleware
from facetrail.service.refusals import REQUEST_INVALID, audit_request_refusal

log = logging.getLogger(__name__)

# Every API router, included explicitly under /api/v1 (a renamed or missing module fails at import, never
# vanishes); tests/test_wiring.py checks the routes against the OpenAPI document and docs/roles.md.
API_ROUTERS = (
    auth.router,
    identity.router,
    users.router,
    galleries.router,
    faces.router,
    searches.router,
    examinations.router,
    audit.router,
    system.router,
    reports.router,
    retention.router,
    governance.router,
    oversight.router,
    enhancements.router,
    leads.router,
)


class WebUI(Protocol):
    """The server-rendered UI (facetrail.web.routes), handed in by the composition root (facetrail.server):
    the web layer builds on this one, so this module never imports it."""

    def mount(self, app: FastAPI) -> None: ...

    def render_error(self, request: Request, status: int, message: str) -> Response: ...


def _wants_html(request: Request) -> bool:
    return not request.url.path.startswith("/api/") and "text/html" in request.headers.get("accept", "")


def create_app(ctx: AppContext | None = None, *, web: WebUI | None = None) -> FastAPI:
    """The REST API (and, with ``web``, the web UI on the same app). ``facetrail.server.create_app`` is the
    whole server as ``facetrail serve`` runs it."""
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
        if status < 500:  # every refusal leaves an audit record (the core's own, or one written here)
            await run_in_threadpool(audit_request_refusal, request, exc)
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
        refused = InvalidRequestError(message, fields=[p["field"] for p in problems])
        await run_in_threadpool(
            audit_request_refusal, request, refused, action=REQUEST_INVALID, details={"problems": problems}
        )
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

    for router in API_ROUTERS:
        app.include_router(router, prefix="/api/v1")
    app.state.web = web
    if web is not None:
        web.mount(app)
    return app


def _html_error(request: Request, status: int, message: str) -> Response:
    web: WebUI | None = getattr(request.app.state, "web", None)
    if web is not None:
        return web.render_error(request, status, message)
    from html import escape

    return Response(
        f"<!doctype html><title>Error {status}</title><h1>Error {status}</h1><p>{escape(message)}</p>",
        status_code=status,
        media_type="text/html",
    )
