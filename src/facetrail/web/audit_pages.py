"""The audit log for auditors: a filtered, paged listing, chain verification, export (facetrail.audit.query;
every read is itself audited there)."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, Response
from starlette.background import BackgroundTask
from starlette.datastructures import FormData

from facetrail.accounts import mfa
from facetrail.audit.export import EXPORT_FORMATS
from facetrail.audit.query import export_audit_file, query_audit, verify_audit_log
from facetrail.context import AppContext
from facetrail.errors import FaceTrailError
from facetrail.policy.principal import Principal
from facetrail.policy.roles import Permission
from facetrail.service.deps import get_ctx
from facetrail.web.common import csrf_ok, form_data, render, web_require

router = APIRouter(include_in_schema=False)
LIMITS = (50, 200, 1000)
OUTCOMES = ("", "ok", "denied", "refused", "failed", "not_found", "locked", "throttled", "unauthenticated", "broken")


@router.get("/audit")
def audit_log(
    request: Request,
    action: str = "",
    actor: str = "",
    outcome: str = "",
    since: str = "",
    until: str = "",
    limit: int = 50,
    page: int = 1,
    ctx: AppContext = Depends(get_ctx),
    who: Principal = web_require(Permission.AUDIT_READ),
) -> Response:
    limit = limit if limit in LIMITS else 50
    page = max(1, page)
    action, actor, outcome, since, until = (v.strip() for v in (action, actor, outcome, since, until))
    filters = {"action": action, "actor": actor, "outcome": outcome, "since": since, "until": until, "limit": limit}
    common: dict[str, Any] = {
        "title": "Audit log",
        "filters": filters,
        "limits": LIMITS,
        "outcomes": OUTCOMES,
        "formats": EXPORT_FORMATS,
        "page": page,
    }
    try:
        listing = query_audit(
            ctx,
            who,
            action=action or None,
            actor=actor or None,
            outcome=outcome or None,
            since=since or None,
            until=until or None,
            limit=limit,
            offset=(page - 1) * limit,
        )
    except FaceTrailError as exc:
        return render(request, "audit.html", status=422, records=[], has_more=False, error=exc.message, **common)
    for r in listing.records:
        r["details_pretty"] = json.dumps(r["details"], indent=1, ensure_ascii=False)
    return render(request, "audit.html", records=listing.records, has_more=listing.has_more, **common)


@router.post("/audit/verify")
def audit_verify(
    request: Request,
    ctx: AppContext = Depends(get_ctx),
    who: Principal = web_require(Permission.AUDIT_READ),
    form: FormData = Depends(form_data),
) -> Response:
    csrf_ok(request, form)
    return render(request, "audit_verify.html", title="Audit chain verification", result=verify_audit_log(ctx, who))


@router.get("/audit/export")
def audit_export(
    format: str = "jsonl",
    since: str = "",
    until: str = "",
    ctx: AppContext = Depends(get_ctx),
    who: Principal = web_require(Permission.AUDIT_READ),
) -> Response:
    mfa.require_fresh_second_factor(ctx, who, "exporting the audit log")
    work = Path(tempfile.mkdtemp(prefix="facetrail-export-"))
    out = work / f"facetrail-audit.{format if format in EXPORT_FORMATS else 'jsonl'}"
    try:
        export_audit_file(ctx, who, out, fmt=format, since=since or None, until=until or None)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    media = "text/csv" if format == "csv" else "application/x-ndjson"
    return FileResponse(
        out, media_type=media, filename=out.name, background=BackgroundTask(shutil.rmtree, work, ignore_errors=True)
    )
