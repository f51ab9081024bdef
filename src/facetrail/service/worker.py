"""The application of one server worker process when ``facetrail serve --processes N`` runs several.

uvicorn's process manager imports this factory in each worker. The parent has already migrated the database
and created the first administrator; a worker only opens its own context (its own connection pool and index
cache) from the same settings (environment and ``FACETRAIL_CONFIG``).
"""

from __future__ import annotations

import os

from fastapi import FastAPI

from facetrail.context import open_context
from facetrail.service.app import create_app

THREADS_ENV = "FACETRAIL_SERVE_THREADS"


def worker_app() -> FastAPI:
    app = create_app(open_context(migrate=False))
    app.state.worker_threads = int(os.environ.get(THREADS_ENV, "8"))
    return app
