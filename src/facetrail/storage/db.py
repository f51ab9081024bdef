"""Database engine and sessions. SQLite (WAL) is the embedded default; PostgreSQL is the server database.

Both are the system of record: embeddings live in the database, the vector index is rebuilt from it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from facetrail.config import Settings


def make_engine(url: str, *, for_writes: bool = True) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("sqlite:///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        _configure_sqlite(engine, immediate=for_writes)
        return engine
    return create_engine(url, pool_pre_ping=True)


def _configure_sqlite(engine: Engine, immediate: bool) -> None:
    # pysqlite's own transaction handling defers BEGIN until the first write, so two writers can both read
    # the audit head and then collide. We take control: every transaction starts with BEGIN IMMEDIATE,
    # which takes the write lock up front and serialises writers (SQLAlchemy's documented recipe).
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA secure_delete=ON")  # deleted faces are zeroed, not left in free pages (retention)
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


class Database:
    """An engine plus a session factory. ``with db.transaction() as s:`` commits or rolls back as one unit."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        # WAL readers never block writers; on SQLite reads get their own engine without BEGIN IMMEDIATE.
        self._read_engine = make_engine(url, for_writes=False) if url.startswith("sqlite") else self.engine
        self._read_sessions = sessionmaker(self._read_engine, expire_on_commit=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> Database:
        return cls(settings.resolved_database_url)

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        session = self._sessions()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    @contextmanager
    def read(self) -> Iterator[Session]:
        session = self._read_sessions()
        try:
            yield session
        finally:
            session.rollback()
            session.close()

    def dispose(self) -> None:
        self.engine.dispose()
        self._read_engine.dispose()
