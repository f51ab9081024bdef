"""The test databases: SQLite always, PostgreSQL when one answers (FACETRAIL_TEST_POSTGRES_URL, else
127.0.0.1:5432; under CI it must). One throwaway database per use, dropped afterwards. Shared by the storage
tests and the storage-level adversarial tests."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, text

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def postgres_admin_url() -> str | None:
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


PG_ADMIN_URL = postgres_admin_url()
BACKENDS = ["sqlite"] + (["postgres"] if PG_ADMIN_URL else [])


@contextmanager
def database_url_for(backend: str, tmp_path: Path, prefix: str = "facetrail_test") -> Iterator[str]:
    """A fresh database's URL: a file in ``tmp_path`` for SQLite, a new PostgreSQL database (dropped on exit)."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'facetrail.db'}"
        return
    assert PG_ADMIN_URL
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
