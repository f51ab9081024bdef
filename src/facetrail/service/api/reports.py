"""Disclosure packets (reviewers: their unit's cases; auditors: any case, without probe faces) and the
transparency report (auditors, administrators). Both are audited by the core, denials by the dependencies."""

from __future__ import annotations

import io
import zipfile
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import Response

from facetrail.accounts import mfa
from facetrail.context import AppContext
from facetrail.errors import BadInputError
from facetrail.policy.principal import Principal
from facetrail.policy.roles import Permission
from facetrail.reports.packet import collect_packet, scope_for
from facetrail.reports.packet_pdf import render_pdf
from facetrail.reports.transparency import collect_report, data_url, render_html, section_csv
from facetrail.service.api._common import ERROR_RESPONSES
from facetrail.service.deps import get_ctx, require

router = APIRouter(tags=["reports"], responses=ERROR_RESPONSES)
packet_maker = require(Permission.CASE_PACKET)
report_reader = require(Permission.REPORT_READ)
DATE = r"^\d{4}-\d{2}-\d{2}$"
FromQuery = Annotated[str, Query(alias="from", pattern=DATE, description="First day, YYYY-MM-DD (UTC)")]
ToQuery = Annotated[str, Query(alias="to", pattern=DATE, description="Last day, included, YYYY-MM-DD (UTC)")]


def _safe_name(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)[:100]


@router.get(
    "/cases/{case_number:path}/packet",
    summary="A case's disclosure packet, PDF or JSON (audited). The case number may contain '/' "
    "(send it as is or as %2F).",
    response_class=Response,
    responses={
        200: {
            "content": {"application/pdf": {}, "application/json": {}},
            "description": "Every search of the case in the caller's scope",
        }
    },
)
def packet(
    case_number: Annotated[str, Path(min_length=1, max_length=100)],
    format: Annotated[Literal["pdf", "json"], Query()] = "pdf",
    ctx: AppContext = Depends(get_ctx),
    who: Principal = Depends(packet_maker),
) -> Response:
    mfa.require_fresh_second_factor(ctx, who, "downloading a case packet")
    made = collect_packet(
        ctx,
        case_number,
        actor=who.actor,
        scope=scope_for(who),
        audit_context=who.audit_context(),
        render=render_pdf if format == "pdf" else None,
    )
    name = f"disclosure-packet-{_safe_name(made.case_number)}.{format}"
    headers = {"content-disposition": f'attachment; filename="{name}"', "cache-control": "no-store"}
    if format == "json":
        return Response(made.to_json(), media_type="application/json", headers=headers)
    return Response(made.rendered, media_type="application/pdf", headers=headers)


@router.get(
    "/reports/transparency",
    summary="The transparency report for a period (audited)",
    response_class=Response,
    responses={
        200: {
            "content": {"text/html": {}, "text/csv": {}, "application/zip": {}},
            "description": "html: one page, charts inline; csv: one table; zip: page, charts, every table",
        }
    },
)
def transparency(
    date_from: FromQuery,
    date_to: ToQuery,
    format: Annotated[Literal["html", "csv", "zip"], Query()] = "html",
    table: Annotated[str | None, Query(max_length=60, description="With format=csv: which table")] = None,
    ctx: AppContext = Depends(get_ctx),
    who: Principal = Depends(report_reader),
) -> Response:
    report = collect_report(ctx, date_from, date_to, actor=who.actor, audit_context=who.audit_context())
    stem = f"transparency-{report.period_from}-{report.period_to}"
    if format == "html":
        return Response(render_html(report, data_url), media_type="text/html")
    if format == "csv":
        tables = {s.key: s for s in report.sections if s.columns}
        if table not in tables:
            raise BadInputError(f"table must be one of {', '.join(tables)}", field="table", allowed=list(tables))
        return Response(
            section_csv(tables[table]),
            media_type="text/csv",
            headers={"content-disposition": f'attachment; filename="{stem}-{table}.csv"'},
        )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"{stem}/index.html", render_html(report, lambda s: f"{s.key}.png"))
        for sec in report.sections:
            if sec.columns:
                archive.writestr(f"{stem}/{sec.key}.csv", section_csv(sec))
            if sec.chart is not None:
                archive.writestr(f"{stem}/{sec.key}.png", sec.chart)
    return Response(
        buffer.getvalue(),
        media_type="application/zip",
        headers={"content-disposition": f'attachment; filename="{stem}.zip"'},
    )
