"""The audit log for auditors signed in to the server: filtered, paged reading, chain verification and export.

Every read is itself audited ('audit.read', 'audit.verify', 'audit.export'), in the same transaction as the
read where the core allows it, so nobody reads the log without leaving a trace.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select

from facetrail.audit.export import EXPORT_FIELDS, ExportResult, export_audit, parse_time
from facetrail.audit.log import AuditVerification, append_audit
from facetrail.audit.service import latest_witness, verify_with_settings
from facetrail.context import AppContext
from facetrail.errors import BadInputError
from facetrail.policy.principal import Principal
from facetrail.policy.roles import Permission
from facetrail.storage.models import AuditRecord

MAX_PAGE = 1000


@dataclass(frozen=True)
class AuditPage:
    records: list[dict[str, Any]]  # newest first; details parsed from its canonical JSON
    has_more: bool
    audit_seq: int  # the 'audit.read' record of this read


def query_audit(
    ctx: AppContext,
    who: Principal,
    *,
    action: str | None = None,
    actor: str | None = None,
    outcome: str | None = None,
    since: str | None = None,
    until: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> AuditPage:
    """Records with since <= ts < until, newest first. ``action`` 'search' matches 'search' and 'search.*'."""
    who.require(Permission.AUDIT_READ)
    if not 1 <= limit <= MAX_PAGE:
        raise BadInputError(f"limit must be between 1 and {MAX_PAGE}", field="limit")
    if offset < 0:
        raise BadInputError("offset must not be negative", field="offset")
    since_ts = parse_time(since, "since") if since else None
    until_ts = parse_time(until, "until") if until else None
    query = select(*(getattr(AuditRecord, name) for name in EXPORT_FIELDS))
    if action:
        query = query.where(
            (AuditRecord.action == action) | AuditRecord.action.startswith(action + ".", autoescape=True)
        )
    if actor:
        query = query.where(AuditRecord.actor == actor)
    if outcome:
        query = query.where(AuditRecord.outcome == outcome)
    if since_ts:
        query = query.where(AuditRecord.ts >= since_ts)
    if until_ts:
        query = query.where(AuditRecord.ts < until_ts)
    filters = {
        "action": action,
        "actor": actor,
        "outcome": outcome,
        "since": since_ts,
        "until": until_ts,
        "limit": limit,
        "offset": offset,
    }
    with ctx.db.transaction() as s:
        rows = [
            dict(r._mapping) for r in s.execute(query.order_by(AuditRecord.seq.desc()).limit(limit + 1).offset(offset))
        ]
        has_more = len(rows) > limit
        rows = rows[:limit]
        record = append_audit(
            s,
            actor=who.actor,
            action="audit.read",
            target="audit_log",
            details={
                **filters,
                "count": len(rows),
                "seqs": [rows[-1]["seq"], rows[0]["seq"]] if rows else None,
                **who.audit_context(),
            },
        )
        seq = record.seq
    for row in rows:
        row["details"] = json.loads(row["details"])
    return AuditPage(records=rows, has_more=has_more, audit_seq=seq)


def verify_audit_log(ctx: AppContext, who: Principal) -> AuditVerification:
    """Recompute the chain and check the signed checkpoints; the result is audited ('audit.verify')."""
    who.require(Permission.AUDIT_READ)
    result = verify_with_settings(ctx)
    with ctx.db.transaction() as s:
        append_audit(
            s,
            actor=who.actor,
            action="audit.verify",
            target="audit_log",
            outcome="ok" if result.ok else "broken",
            details={
                "ok": result.ok,
                "records": result.records,
                "first_bad_seq": result.first_bad_seq,
                "problem": result.problem,
                **who.audit_context(),
            },
        )
    return result


def export_audit_file(
    ctx: AppContext,
    who: Principal,
    out: Path,
    *,
    fmt: str = "jsonl",
    since: str | None = None,
    until: str | None = None,
) -> ExportResult:
    """Write the export to ``out``; the core audits it ('audit.export') before the file exists."""
    who.require(Permission.AUDIT_READ)
    return export_audit(
        ctx.db,
        actor=who.actor,
        out=out,
        stdout=None,  # type: ignore[arg-type]
        since=since,
        until=until,
        fmt=fmt,
        checkpoint=latest_witness(ctx),
    )
