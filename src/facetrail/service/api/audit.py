"""The audit log for auditors: filtered reading, chain verification, export. Every read is itself audited."""

from __future__ import annotations

import json
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Query
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field
from starlette.background import BackgroundTask

from facetrail.accounts import mfa
from facetrail.audit.query import export_audit_file, query_audit, verify_audit_log
from facetrail.audit.service import CheckpointScheduler, latest_witness
from facetrail.context import AppContext
from facetrail.policy.principal import Principal
from facetrail.policy.roles import Permission
from facetrail.service.api._common import ERROR_RESPONSES
from facetrail.service.deps import get_ctx, require


@asynccontextmanager
async def _checkpoints(app: FastAPI) -> AsyncIterator[None]:
    """Including this router starts the server's automatic audit checkpoints (audit.checkpoint_every_*)."""
    scheduler = CheckpointScheduler(app.state.ctx)
    scheduler.start()
    app.state.checkpoint_scheduler = scheduler
    try:
        yield
    finally:
        scheduler.stop()


router = APIRouter(prefix="/audit", tags=["audit"], responses=ERROR_RESPONSES, lifespan=_checkpoints)
auditor = require(Permission.AUDIT_READ)
TimeQuery = Annotated[str | None, Query(max_length=40, description="ISO-8601 date or time (UTC if no zone)")]


class AuditRecordOut(BaseModel):
    seq: int
    ts: str
    actor: str
    action: str
    target: str
    outcome: str
    details: dict[str, Any]
    prev_hash: str
    hash: str


class AuditPageOut(BaseModel):
    records: list[AuditRecordOut] = Field(description="Newest first")
    has_more: bool
    audit_seq: int = Field(description="The 'audit.read' record that logs this read")


class ChainVerification(BaseModel):
    ok: bool
    records: int
    head_seq: int
    head_hash: str
    first_bad_seq: int | None
    problem: str | None
    checkpoints_checked: int
    last_checkpoint_seq: int | None
    problems: list[str]
    warnings: list[str]


@router.get("/records", response_model=AuditPageOut, summary="Read the audit log (filtered, paged; audited)")
def records(
    action: Annotated[str | None, Query(max_length=100, description="'search' matches search and search.*")] = None,
    actor: Annotated[str | None, Query(max_length=200, description="e.g. user:alice")] = None,
    outcome: Annotated[str | None, Query(max_length=40)] = None,
    since: TimeQuery = None,
    until: TimeQuery = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    ctx: AppContext = Depends(get_ctx),
    who: Principal = Depends(auditor),
) -> AuditPageOut:
    page = query_audit(
        ctx, who, action=action, actor=actor, outcome=outcome, since=since, until=until, limit=limit, offset=offset
    )
    return AuditPageOut(
        records=[AuditRecordOut(**r) for r in page.records], has_more=page.has_more, audit_seq=page.audit_seq
    )


@router.get("/verify", response_model=ChainVerification, summary="Recompute the hash chain (audited)")
def verify(ctx: AppContext = Depends(get_ctx), who: Principal = Depends(auditor)) -> ChainVerification:
    return ChainVerification(**verify_audit_log(ctx, who).to_dict())


@router.get(
    "/export",
    response_class=FileResponse,
    summary="Export the audit log as JSON Lines or CSV (audited)",
    responses={
        200: {
            "content": {"application/x-ndjson": {}, "text/csv": {}},
            "description": "Every field exactly as hashed, oldest first",
        }
    },
)
def export(
    format: Annotated[Literal["jsonl", "csv"], Query()] = "jsonl",
    since: TimeQuery = None,
    until: TimeQuery = None,
    ctx: AppContext = Depends(get_ctx),
    who: Principal = Depends(auditor),
) -> FileResponse:
    mfa.require_fresh_second_factor(ctx, who, "exporting the audit log")
    folder = Path(tempfile.mkdtemp(prefix="facetrail-audit-export-"))
    out = folder / f"audit.{format}"
    try:
        export_audit_file(ctx, who, out, fmt=format, since=since, until=until)
    except BaseException:
        _remove(folder)
        raise
    media = "text/csv" if format == "csv" else "application/x-ndjson"
    # The newest signed checkpoint travels with every export (and is in its 'audit.export' record).
    witness = json.dumps(latest_witness(ctx), separators=(",", ":"))
    return FileResponse(
        out,
        media_type=media,
        filename=f"facetrail-audit.{format}",
        headers={"x-facetrail-checkpoint": witness},
        background=BackgroundTask(_remove, folder),
    )


def _remove(folder: Path) -> None:
    for child in folder.iterdir():
        child.unlink(missing_ok=True)
    folder.rmdir()
