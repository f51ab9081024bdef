"""Storage-level attacks run on SQLite and on PostgreSQL (when one answers on 127.0.0.1:5432, or
FACETRAIL_TEST_POSTGRES_URL; under CI=true it must). Import ``backend_ctx`` into a test module and
parametrize with ``BACKENDS`` (``@pytest.mark.parametrize("backend_ctx", BACKENDS, indirect=True)``)."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from facetrail.config import Settings
from facetrail.context import AppContext, open_context

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def _postgres_admin_url() -> str | None:
    url = os.environ.get("FACETRAIL_TEST_POSTGRES_URL")
    if url:
        return url
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=0.5):
            return DEFAULT_PG
    except OSError:
        if os.environ.get("CI"):
            raise RuntimeError("CI needs PostgreSQL on 127.0.0.1:5432 for the adversarial storage tests") from None
        return None


PG_ADMIN_URL = _postgres_admin_url()
BACKENDS = ["sqlite"] + (["postgres"] if PG_ADMIN_URL else [])


@pytest.fixture
def backend_ctx(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AppContext]:
    backend = getattr(request, "param", "sqlite")
    name = None
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'facetrail.db'}"
    else:
        assert PG_ADMIN_URL
        name = f"facetrail_adv_{uuid.uuid4().hex[:12]}"
        admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    ctx = open_context(Settings(data_dir=tmp_path / "data", database_url=url))  # type: ignore[call-arg]
    try:
        yield ctx
    finally:
        ctx.close()
        if name is not None:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()
