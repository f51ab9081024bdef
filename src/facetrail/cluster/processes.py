"""How many server processes ``facetrail serve`` runs, and why SQLite runs only one.

SQLite serialises writers inside one file on one host and its index snapshots live beside it; several
processes would contend for the write lock and gain nothing. PostgreSQL is shared by any number of processes
and hosts: the default there is one process per core (each process runs the face pipeline on one core at a
time per request thread, and a search's faiss scan is single-threaded).
"""

from __future__ import annotations

import os

from facetrail.errors import BadInputError


class ProcessCountError(BadInputError):
    code = "processes_not_supported"
    exit_code = 2


def server_processes(requested: int | None, *, is_sqlite: bool, cores: int | None = None) -> int:
    """The number of processes to run: ``requested`` if given (at least 1), else one per core on PostgreSQL
    and one on SQLite. Raises ``ProcessCountError`` for more than one on SQLite."""
    if requested is not None and requested < 1:
        raise ProcessCountError(f"--processes must be at least 1, not {requested}", field="processes")
    if is_sqlite:
        if requested is not None and requested > 1:
            raise ProcessCountError(
                f"--processes {requested} needs PostgreSQL: the embedded SQLite database serves one process "
                "(with threads). Set FACETRAIL_DATABASE_URL=postgresql+psycopg://... to run several processes "
                "or hosts (docs/deployment.md).",
                field="processes",
            )
        return 1
    return requested if requested is not None else max(1, cores or os.cpu_count() or 1)
