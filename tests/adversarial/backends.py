"""Storage-level attacks run on SQLite and on PostgreSQL (when one answers on 127.0.0.1:5432, or
FACETRAIL_TEST_POSTGRES_URL; under CI=true it must). Import ``backend_ctx`` into a test module and
parametrize with ``BACKENDS`` (``@pytest.mark.parametrize("backend_ctx", BACKENDS, indirect=True)``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from databases import BACKENDS as BACKENDS  # re-exported for the test modules
from databases import database_url_for
from facetrail.config import Settings
from facetrail.context import AppContext, open_context


@pytest.fixture
def backend_ctx(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AppContext]:
    backend = getattr(request, "param", "sqlite")
    with database_url_for(backend, tmp_path, prefix="facetrail_adv") as url:
        ctx = open_context(Settings(data_dir=tmp_path / "data", database_url=url))  # type: ignore[call-arg]
        try:
            yield ctx
        finally:
            ctx.close()
