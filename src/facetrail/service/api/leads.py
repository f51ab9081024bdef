"""The investigative lead report of a released lead, as a PDF (reports/leads.py; docs/examination.md).

Contract: those who may have the case's disclosure packet (reviewers of the search's unit; auditors, without
images), with a fresh second factor like a packet; only for a released lead (404 ``lead_not_released``
otherwise); every report and every refusal audited. The same report is part of the case's disclosure packet.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path
from fastapi.responses import Response

from facetrail.accounts import mfa
from facetrail.context import AppContext
from facetrail.policy.principal import Principal
from facetrail.policy.roles import Permission
from facetrail.reports.leads import make_lead_report
from facetrail.service.api._common import ERROR_RESPONSES, IdPath
from facetrail.service.deps import get_ctx, require

router = APIRouter(tags=["reports"], responses=ERROR_RESPONSES)


@router.get(
    "/searches/{search_id}/leads/{rank}/report",
    summary="The investigative lead report of a released lead (PDF; packet readers; audited)",
    response_class=Response,
    responses={200: {"content": {"application/pdf": {}}, "description": "The lead report"}},
)
def lead_report(
    search_id: IdPath,
    rank: Annotated[int, Path(ge=1, le=1000)],
    ctx: AppContext = Depends(get_ctx),
    who: Principal = Depends(require(Permission.CASE_PACKET)),
) -> Response:
    mfa.require_fresh_second_factor(ctx, who, "downloading a lead report")
    pdf = make_lead_report(ctx, who, search_id, rank)
    headers = {
        "content-disposition": f'attachment; filename="lead-report-search-{search_id}-rank-{rank}.pdf"',
        "cache-control": "no-store",
    }
    return Response(pdf, media_type="application/pdf", headers=headers)
