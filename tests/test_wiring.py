"""The server's routes and the CLI's commands are registered explicitly (no module skipped silently), and what is
registered is what is documented: every API route is in the OpenAPI document and in docs/roles.md's role ×
endpoint table, and every top-level CLI command is documented."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from fastapi import FastAPI
from fastapi.routing import APIRoute

from facetrail.config import Settings
from facetrail.context import open_context

ROOT = Path(__file__).resolve().parents[1]
ROW = re.compile(r"^\|\s*((?:GET|POST|PUT|PATCH|DELETE)(?:,\s*(?:GET|POST|PUT|PATCH|DELETE))*)\s*\|\s*`([^`]+)`")


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FastAPI]:
    from facetrail.server import create_app

    ctx = open_context(Settings(data_dir=tmp_path_factory.mktemp("wiring") / "data"))  # type: ignore[call-arg]
    try:
        yield create_app(ctx)
    finally:
        ctx.close()


def _api_routes(app: FastAPI) -> set[tuple[str, str]]:
    """(method, path) of every route of the routers the API includes (service.app.API_ROUTERS, under /api/v1)."""
    from facetrail.service.app import API_ROUTERS

    return {
        (method, "/api/v1" + _plain(route.path))
        for router in API_ROUTERS
        for route in router.routes
        if isinstance(route, APIRoute)
        for method in route.methods - {"HEAD"}
    }


def _plain(path: str) -> str:
    return re.sub(r"\{(\w+):\w+\}", r"{\1}", path)  # /cases/{case_number:path}/packet as documented


def _documented() -> set[tuple[str, str]]:
    """(method, path) of every row of the role × endpoint table. A row may name several methods ("GET, POST"),
    several paths ("`/policy`, `/policy/history`; POST `/policy/validate`") and siblings ("`…/deny`")."""
    rows = set()
    for line in (ROOT / "docs" / "roles.md").read_text(encoding="utf-8").splitlines():
        match = ROW.match(line)
        if not match:
            continue
        methods = [m.strip() for m in match.group(1).split(",")]
        cell = line.split("|")[2]
        previous = ""
        for token in re.finditer(r"\b(GET|POST|PUT|PATCH|DELETE)\b|`([^`]+)`", cell):
            if token.group(1):
                methods = [token.group(1)]
                continue
            path = token.group(2).split()[0]
            if path.startswith("…/"):
                path = previous.rsplit("/", 1)[0] + path[1:]
            previous = path
            rows |= {(m, "/api/v1" + path) for m in methods}
    return rows


def test_every_api_route_is_in_the_openapi_document(app: FastAPI) -> None:
    """The app includes every route of every router, and hides none from the OpenAPI document."""
    spec = app.openapi()
    in_spec = {(m.upper(), path) for path, ops in spec["paths"].items() for m in ops}
    routes = _api_routes(app)
    assert len(routes) > 60  # the scan sees the routers (all eleven of them)
    assert routes == in_spec


def test_every_api_route_is_in_the_role_table(app: FastAPI) -> None:
    documented = _documented()
    routes = _api_routes(app)
    assert not routes - documented, f"routes missing from docs/roles.md: {sorted(routes - documented)}"
    assert not documented - routes, f"docs/roles.md rows with no route: {sorted(documented - routes)}"


def test_every_router_module_is_included(app: FastAPI) -> None:
    """A router module added under service/api but not listed in service.app.API_ROUTERS fails here."""
    from facetrail.service import app as service_app

    modules = {p.stem for p in (ROOT / "src" / "facetrail" / "service" / "api").glob("*.py")} - {"__init__", "_common"}
    included = {router_module(r) for r in service_app.API_ROUTERS}
    assert included == modules


def router_module(router: object) -> str:
    route = next(r for r in router.routes if isinstance(r, APIRoute))  # type: ignore[attr-defined]
    return str(route.endpoint.__module__).rsplit(".", 1)[-1]


def test_every_cli_command_is_registered_and_documented() -> None:
    from facetrail.cli.main import app as cli

    command = typer.main.get_command(cli)
    names = set(command.commands)  # type: ignore[attr-defined]
    modules = {p.stem for p in (ROOT / "src" / "facetrail" / "cli").glob("*_cmd.py")}
    assert len(modules) >= 10 and len(names) >= len(modules)
    docs = "\n".join(p.read_text(encoding="utf-8") for p in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
    undocumented = sorted(n for n in names if f"facetrail {n}" not in docs)
    assert not undocumented, f"CLI commands not documented in README.md or docs/: {undocumented}"
