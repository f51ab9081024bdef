"""Health, readiness and version: no authentication, reveals nothing.

- ``GET /health`` (liveness): the process answers. A load balancer restarts or drops a process that does not.
- ``GET /ready`` (readiness): the database answers and this process has every gallery's index loaded and
  mirroring the database's latest version (a process catching up from the change log is brought up to date
  by the check itself, O(changes)). 503 ``not_ready`` until then: send it no searches.

Including this router also loads every gallery's index in the background when the server starts (so the first
search does not pay for it), runs the full index check every ``cluster.index_check_hours``
(gallery/index_check.py) and saves unsaved index snapshots when it stops.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

import facetrail
from facetrail.gallery.index_check import IndexCheckScheduler
from facetrail.gallery.index_sync import flush_indexes
from facetrail.service.errors import error_body
from facetrail.service.readiness import IndexWarmup, readiness

log = logging.getLogger(__name__)


@asynccontextmanager
async def _indexes(app: FastAPI) -> AsyncIterator[None]:
    threads = getattr(app.state, "worker_threads", None)
    if threads:  # the default limiter (40) oversubscribes a small machine's cores
        anyio.to_thread.current_default_thread_limiter().total_tokens = threads
    warmup = IndexWarmup(app.state.ctx)
    app.state.index_warmup = warmup
    threading.Thread(target=warmup.run, name="facetrail-index-warmup", daemon=True).start()
    checks = IndexCheckScheduler(app.state.ctx)
    checks.start()
    app.state.index_check_scheduler = checks
    try:
        yield
    finally:
        warmup.stop()
        checks.stop()
        try:
            flush_indexes(app.state.ctx)  # a restart replays less of the change log
        except Exception:  # the snapshot is an optimisation: a stale one is caught up at the next start
            log.exception("could not save the index snapshots at shutdown")


router = APIRouter(tags=["system"], lifespan=_indexes)


class Health(BaseModel):
    status: str
    version: str


class Ready(BaseModel):
    status: str


@router.get("/health", response_model=Health, summary="Liveness check")
def health() -> Health:
    return Health(status="ok", version=facetrail.__version__)


@router.get(
    "/ready",
    response_model=Ready,
    summary="Readiness check: database reachable, every gallery's index loaded and current",
    responses={503: {"description": "not ready (code `not_ready`, with the reason)"}},
)
def ready(request: Request) -> Ready | JSONResponse:
    ctx = request.app.state.ctx
    warmup: IndexWarmup | None = getattr(request.app.state, "index_warmup", None)
    state = readiness(ctx, warmup)
    if not state.ready:
        return JSONResponse(error_body("not_ready", state.reason), status_code=503)
    return Ready(status="ready")  # public: says nothing about the galleries
