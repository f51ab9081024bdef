"""An investigative lead report on its own (GET /searches/{search_id}/leads/{rank}/report): who may have it,
its audit record, and its PDF. What it holds: reports/lead_report.py.

Guarantees: only those who may have the case's disclosure packet (case.packet: reviewers of the search's unit;
auditors, without images) and only for a released lead; a search outside the caller's scope reads "not found";
every refusal is audited through the one gate; each report made is audited ('lead.report') with its SHA-256.
Sequential unmasking: a reviewer whose examination of the search is open (or who may yet be assigned to it) is
answered like for a candidate that is no released lead: the report carries the case story.
"""

from __future__ import annotations

import datetime as dt
import hashlib

from facetrail.audit.log import append_audit
from facetrail.audit.refusals import ensure_permission, refuse
from facetrail.context import AppContext
from facetrail.examination import unmasking
from facetrail.policy.principal import Principal
from facetrail.policy.roles import Permission
from facetrail.reports.lead_report import (
    ACTION,
    LeadNotReleasedError,
    LeadSearchNotFoundError,
    collect_lead,
    released_leads,
)
from facetrail.reports.lead_report_pdf import render_lead_report
from facetrail.reports.packet import scope_for
from facetrail.storage.models import SearchRecord


def make_lead_report(ctx: AppContext, who: Principal, search_id: int, rank: int) -> bytes:
    """The PDF of the released lead at ``rank`` of a search, for those who may have the case's packet (auditors:
    no images). Audited 'lead.report' with the PDF's SHA-256; refusals audited ('lead_not_released' for a
    candidate that is not a released lead, 'not_found' for a search outside the caller's scope)."""
    target = f"search:{search_id}"
    ensure_permission(ctx, who, Permission.CASE_PACKET, action=ACTION, target=target)
    scope = scope_for(who)
    with ctx.db.read() as s:
        record = s.get(SearchRecord, search_id)
        if record is not None and scope.unit_id is not None and record.unit_id != scope.unit_id:
            record = None
        if record is not None:
            s.expunge(record)
    if record is None:
        raise refuse(
            ctx,
            who,
            ACTION,
            target,
            LeadSearchNotFoundError(f"no search {search_id}", search_id=search_id),
            outcome="not_found",
        )
    match = [int(c["face_id"]) for c in record.candidates if int(c["rank"]) == rank]
    examining = unmasking.story_withheld(who, unmasking.examination_state(ctx, [search_id]).get(search_id, {}))
    if examining or not match or match[0] not in released_leads(ctx, record):
        raise refuse(
            ctx,
            who,
            ACTION,
            target,
            LeadNotReleasedError(f"search {search_id} has no released lead at rank {rank}"),
            details={
                "rank": rank,
                **({"reason": "the caller's examination of this search is open"} if examining else {}),
            },
        )
    with ctx.db.read() as s:
        live = s.get(SearchRecord, search_id)
        assert live is not None
        data = collect_lead(ctx, s, live, match[0], include_images=scope.include_probe_images)
    data["generated_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    data["generated_by"] = who.actor
    pdf = render_lead_report(data)
    with ctx.db.transaction() as s:
        append_audit(
            s,
            actor=who.actor,
            action=ACTION,
            target=target,
            details={
                "search_id": search_id,
                "rank": rank,
                "case_number": record.case_number,
                "images_included": scope.include_probe_images,
                "enhancements": len(data["enhancements"]),
                "sha256": hashlib.sha256(pdf).hexdigest(),
                **who.audit_context(),
            },
        )
    return pdf
