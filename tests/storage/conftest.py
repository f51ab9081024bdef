"""Storage fixtures: every test here runs against SQLite and, where reachable, PostgreSQL.

PostgreSQL is used when FACETRAIL_TEST_POSTGRES_URL is set or a server answers on 127.0.0.1:5432 (as on
CI). Under CI (CI=true) an unreachable PostgreSQL is an error, never a silent skip. Each test gets its own
fresh database.
"""

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
            raise RuntimeError("CI needs PostgreSQL on 127.0.0.1:5432 for the storage tests") from None
        return None


PG_ADMIN_URL = _postgres_admin_url()
BACKENDS = ["sqlite"] + (["postgres"] if PG_ADMIN_URL else [])


@pytest.fixture
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    backend = getattr(request, "param", "sqlite")
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'facetrail.db'}"
        return
    assert PG_ADMIN_URL
    name = f"facetrail_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "database_url" in metafunc.fixturenames:
        metafunc.parametrize("database_url", BACKENDS, indirect=True)


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    # MFA off (mfa.required_roles = []): these tests are about storage, governance, reports and retention, and
    # sign their users in through core functions. Second factors have their own tests here (test_mfa_store.py,
    # which enrols, so step-up still applies) and run ON in tests/identity, tests/server and tests/adversarial.
    return Settings(  # type: ignore[call-arg]
        data_dir=tmp_path / "data", database_url=database_url, mfa={"required_roles": []}
    )


@pytest.fixture
def ctx(settings: Settings) -> Iterator[AppContext]:
    context = open_context(settings)
    try:
        yield context
    finally:
        context.close()
