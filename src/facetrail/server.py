"""The whole server as ``facetrail serve`` runs it: the REST API (facetrail.service.app) with the web UI
(facetrail.web.routes) mounted on the same app. The one place that knows both; nothing imports it but the
CLI's serve command and the tests that need the real thing."""

from __future__ import annotations

from fastapi import FastAPI

from facetrail.context import AppContext
from facetrail.service.app import create_app as create_api_app
from facetrail.web import routes


def create_app(ctx: AppContext | None = None) -> FastAPI:
    return create_api_app(ctx, web=routes)
