"""The whole server as ``facetrail serve`` runs it: the REST API (facetrail.service.app) with the web UI
(facetrail.web.routes) mounted on the same app. The one place that knows both; nothing imports it but the
CLI's serve command, uvicorn's worker processes and the tests that need the real thing.

With ``facetrail serve --processes N`` uvicorn's process manager imports ``worker_app`` in each worker. The
parent has already migrated the database and created the first administrator; a worker only opens its own
context (its own connection pool and index cache) from the same settings (environment and FACETRAIL_CONFIG).
"""

from __future__ import annotations

import os

from fastapi import FastAPI

from facetrail.context import AppContext, open_context
from facetrail.service.app import create_app as create_api_app
from facetrail.web import routes

THREADS_ENV = "FACETRAIL_SERVE_THREADS"


def create_app(ctx: AppContext | None = None) -> FastAPI:
    return create_api_app(ctx, web=routes)


def worker_app() -> FastAPI:
    app = create_app(open_context(migrate=False))
    app.state.worker_threads = int(os.environ.get(THREADS_ENV, "8"))
    return app
