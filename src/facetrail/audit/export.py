"""Reading the audit log out: export (JSONL/CSV) and a filtered listing. Both are themselves audited.

The read and its audit record ('audit.export' / 'audit.read', with the filter and the count) are one
transaction, and nothing is handed out until it has committed: if the record cannot be written, nobody
gets the data. Exported rows carry every hashed field exactly as stored, so the chain can be recomputed
from an export (see docs/audit.md).
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlalchemy.sql import Select

from facetrail.audit.log import append_audit
from facetrail.errors import BadInputError
from facetrail.storage.db import Database
from facetrail.storage.models import AuditRecord

EXPORT_FIELDS = ("seq", "ts", "actor", "action", "target", "outcome", "details", "prev_hash", "hash")
EXPORT_FORMATS = ("jsonl", "csv")


def parse_time(text: str, name: str) -> str:
    """An ISO-8601 date or datetime (no zone means UTC) as the stored form of ``ts``, so strings compare."""
    try:
        when = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise BadInputError(f"--{name}: {text!r} is not an ISO-8601 date or time", field=name) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.astimezone(dt.UTC).isoformat(timespec="microseconds")


def _records_query() -> Select[Any]:
    # Plain columns, not ORM objects: a large export must not pile up in the session's identity map.
    return select(*(getattr(AuditRecord, name) for name in EXPORT_FIELDS))


@dataclass
class ExportResult:
    count: int
    first_seq: int | None
    last_seq: int | None
    audit_seq: int  # the 'audit.export' record that logs this export
    destination: str


def _time_filter(query: Select[Any], since: str | None, until: str | None) -> Select[Any]:
    # ts is stored as fixed-width ISO-8601 UTC, so string order is time order.
    if since:
        query = query.where(AuditRecord.ts >= since)
    if until:
        query = query.where(AuditRecord.ts < until)
    return query


def _write_rows(session: Session, query: Select[Any], fh: IO[str], fmt: str) -> tuple[int, int | None, int | None]:
    writer = csv.writer(fh) if fmt == "csv" else None
    if writer:
        writer.writerow(EXPORT_FIELDS)
    count, first, last = 0, None, None
    for rec in session.execute(query.execution_options(yield_per=2000)):
        row = dict(rec._mapping)
        if writer:
            writer.writerow([row[name] for name in EXPORT_FIELDS])
        else:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        count += 1
        first = rec.seq if first is None else first
        last = rec.seq
    return count, first, last


def export_audit(
    db: Database,
    *,
    actor: str,
    out: Path | None,
    stdout: IO[str],
    since: str | None = None,
    until: str | None = None,
    fmt: str = "jsonl",
    checkpoint: dict[str, Any] | None = None,
) -> ExportResult:
    """Write the records with since <= ts < until to ``out`` (atomically) or, when None, to ``stdout``.

    ``checkpoint``: the newest signed checkpoint, recorded in the export's own audit record (and printed by
    the CLI, sent as a header by the API) so that every export witnesses it."""
    if fmt not in EXPORT_FORMATS:
        raise BadInputError(f"--format must be one of {', '.join(EXPORT_FORMATS)}, not {fmt!r}", field="format")
    since_ts = parse_time(since, "since") if since else None
    until_ts = parse_time(until, "until") if until else None
    destination = str(out) if out else "stdout"
    # Rows go to a temporary file first; it becomes the output only once the audit record has committed.
    tmp_dir = out.resolve().parent if out else None
    if tmp_dir:
        tmp_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".audit-export-", dir=tmp_dir)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh, db.transaction() as session:
            query = _time_filter(_records_query(), since_ts, until_ts).order_by(AuditRecord.seq)
            count, first, last = _write_rows(session, query, fh, fmt)
            fh.flush()
            os.fsync(fh.fileno())
            record = append_audit(
                session,
                actor=actor,
                action="audit.export",
                target=destination,
                details={
                    "since": since_ts,
                    "until": until_ts,
                    "format": fmt,
                    "count": count,
                    "first_seq": first,
                    "last_seq": last,
                    "checkpoint": checkpoint,
                },
            )
        if out:
            os.replace(tmp_name, out)
        else:
            with open(tmp_name, encoding="utf-8", newline="") as src:
                shutil.copyfileobj(src, stdout)
            stdout.flush()
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return ExportResult(count=count, first_seq=first, last_seq=last, audit_seq=record.seq, destination=destination)


@dataclass
class AuditListing:
    records: list[dict[str, Any]]  # newest first
    audit_seq: int  # the 'audit.read' record that logs this listing


def read_audit_log(
    db: Database, *, actor: str, action: str | None = None, by_actor: str | None = None, limit: int = 50
) -> AuditListing:
    """The newest ``limit`` records, optionally filtered (``action`` 'search' matches 'search' and 'search.*')."""
    if not 1 <= limit <= 10_000:
        raise BadInputError("--limit must be between 1 and 10000", field="limit")
    query = _records_query()
    if action:
        query = query.where(
            (AuditRecord.action == action) | AuditRecord.action.startswith(action + ".", autoescape=True)
        )
    if by_actor:
        query = query.where(AuditRecord.actor == by_actor)
    with db.transaction() as session:
        rows = [dict(r._mapping) for r in session.execute(query.order_by(AuditRecord.seq.desc()).limit(limit))]
        record = append_audit(
            session,
            actor=actor,
            action="audit.read",
            target="audit_log",
            details={
                "action": action,
                "actor": by_actor,
                "limit": limit,
                "count": len(rows),
                "seqs": [rows[-1]["seq"], rows[0]["seq"]] if rows else None,
            },
        )
    return AuditListing(records=rows, audit_seq=record.seq)
