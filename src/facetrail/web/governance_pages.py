"""Governance pages: search requests (investigators' own; reviewers approve or deny their unit's), the policy
(everyone reads it; administrators apply a new version), reports (transparency report; case disclosure packet)
and legal holds. Thin: the same core functions as the REST API (service/api/governance.py, reports.py,
retention.py), which check scope and write the audit records."""

from __future__ import annotations

import datetime as dt
import difflib
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from sqlalchemy import select
from starlette.datastructures import FormData

from facetrail.accounts import grants as role_grants
from facetrail.accounts import mfa
from facetrail.cases import requests
from facetrail.context import AppContext
from facetrail.errors import BadInputError, FaceTrailError, PermissionDeniedError
from facetrail.governance import approvals
from facetrail.governance import policy as policy_doc
from facetrail.governance.models import PolicyVersion
from facetrail.policy.principal import Principal
from facetrail.policy.roles import Permission
from facetrail.reports.packet import collect_packet, scope_for
from facetrail.reports.packet_pdf import render_pdf
from facetrail.reports.transparency import collect_report, data_url, render_html, section_csv
from facetrail.retention import holds
from facetrail.service.api._common import require_any
from facetrail.service.deps import get_ctx
from facetrail.service.errors import status_for
from facetrail.web.common import csrf_ok, form_data, render, see_other, web_principal, web_require

router = APIRouter(include_in_schema=False)
REQUEST_NOTICES = {
    "submitted": "Request submitted: a reviewer of your unit decides it. Nothing was searched yet.",
    "approved": "Approved. The search ran as the requester; they see its results.",
    "denied": "Denied. The requester sees the reason.",
}
HOLD_NOTICES = {"added": "Legal hold placed.", "lifted": "Legal hold lifted."}


def _report_or_packet(
    request: Request, ctx: AppContext = Depends(get_ctx), who: Principal = Depends(web_principal)
) -> Principal:
    """The Reports page: for those who may read the transparency report or make a case packet (denial audited)."""
    return require_any(Permission.REPORT_READ, Permission.CASE_PACKET)(request, ctx, who)


report_or_packet = Depends(_report_or_packet)


# ------------------------------------------------------------------ search requests


def _requests_page(request: Request, ctx: AppContext, who: Principal, status: int = 200, **extra: Any) -> Response:
    listed = approvals.list_requests(ctx, who)  # scope by role; other roles refused (audited) by the core
    return render(
        request,
        "requests.html",
        status=status,
        title="Search requests",
        requests=listed,
        may_decide=who.can(Permission.SEARCH_APPROVE),
        **extra,
    )


@router.get("/requests")
def requests_list(
    request: Request, done: str = "", ctx: AppContext = Depends(get_ctx), who: Principal = Depends(web_principal)
) -> Response:
    return _requests_page(request, ctx, who, notice=REQUEST_NOTICES.get(done))


@router.post("/requests/{request_id}/{decision}")
def request_decide(
    request_id: int,
    decision: str,
    request: Request,
    ctx: AppContext = Depends(get_ctx),
    who: Principal = web_require(Permission.SEARCH_APPROVE),
    form: FormData = Depends(form_data),
) -> Response:
    """Approve or deny; the core refuses (and audits) one's own request, another unit's, a decided one."""
    csrf_ok(request, form)
    reason = str(form.get("reason") or "")
    try:
        if decision == "approve":
            requests.approve(ctx, who, request_id, reason)
        elif decision == "deny":
            requests.deny(ctx, who, request_id, reason)
        else:
            raise BadInputError("decision must be approve or deny", field="decision")
    except (PermissionDeniedError, mfa.StepUpRequiredError):
        raise
    except FaceTrailError as exc:
        return _requests_page(request, ctx, who, status=status_for(exc), error=f"Request {request_id}: {exc.message}")
    return see_other(f"/requests?done={'approved' if decision == 'approve' else 'denied'}#request-{request_id}")


# ------------------------------------------------------------------ the policy


def _version_texts(ctx: AppContext) -> dict[int, str]:
    """Every version's text: the diffs shown are those audited with each 'policy.apply'."""
    policy_doc.active_version(ctx)  # seeds version 1 (the shipped default) on a fresh database
    with ctx.db.read() as s:
        return {row.version: row.text for row in s.execute(select(PolicyVersion)).scalars()}


def _policy_page(
    request: Request,
    ctx: AppContext,
    who: Principal,
    status: int = 200,
    draft: str | None = None,
    problems: list[str] | None = None,
    **extra: Any,
) -> Response:
    current = policy_doc.show_policy(ctx)
    texts = _version_texts(ctx)
    history = []
    for v in policy_doc.policy_history(ctx):
        previous = texts.get(v["version"] - 1)
        diff = (
            ""
            if previous is None
            else "".join(
                difflib.unified_diff(
                    previous.splitlines(keepends=True),
                    texts.get(v["version"], "").splitlines(keepends=True),
                    fromfile=f"policy v{v['version'] - 1}",
                    tofile=f"policy v{v['version']}",
                )
            )
        )
        history.append({**v, "diff": diff})
    return render(
        request,
        "policy.html",
        status=status,
        title="Policy",
        current=current,
        history=history,
        may_apply=who.can(Permission.POLICY_MANAGE),
        draft=current["text"] if draft is None else draft,
        problems=problems or [],
        **extra,
    )


@router.get("/policy")
def policy_view(
    request: Request, done: str = "", ctx: AppContext = Depends(get_ctx), who: Principal = Depends(web_principal)
) -> Response:
    return _policy_page(request, ctx, who, notice="New policy version applied." if done == "applied" else None)


@router.post("/policy")
def policy_apply(
    request: Request,
    ctx: AppContext = Depends(get_ctx),
    who: Principal = web_require(Permission.POLICY_MANAGE),
    form: FormData = Depends(form_data),
) -> Response:
    """'check' validates only; 'apply' records the next version (audited with the diff; refusals audited)."""
    csrf_ok(request, form)
    text = str(form.get("text") or "").replace("\r\n", "\n")
    try:
        if form.get("action") == "check":
            policy_doc.parse_policy(text)
            return _policy_page(request, ctx, who, draft=text, notice="The document is valid. Nothing was applied.")
        policy_doc.apply_policy(ctx, text, actor=who.actor, audit_context=who.audit_context())
    except FaceTrailError as exc:
        listed = exc.details.get("problems")
        problems = [str(p) for p in listed] if isinstance(listed, list) else []
        return _policy_page(
            request,
            ctx,
            who,
            status=422,
            draft=text,
            problems=problems,
            error="Not applied: " + (exc.message if not problems else "the policy is invalid."),
        )
    return see_other("/policy?done=applied")


# ------------------------------------------------------------------ reports


def _default_period() -> tuple[str, str]:
    today = dt.datetime.now(dt.UTC).date()
    return today.replace(month=1, day=1).isoformat(), today.isoformat()


@router.get("/reports")
def reports(
    request: Request,
    date_from: str = "",
    date_to: str = "",
    ctx: AppContext = Depends(get_ctx),
    who: Principal = report_or_packet,
) -> Response:
    """The transparency report is generated (and audited) only when a period is submitted."""
    default_from, default_to = _default_period()
    report = None
    if date_from and date_to and who.can(Permission.REPORT_READ):
        report = collect_report(ctx, date_from, date_to, actor=who.actor, audit_context=who.audit_context())
    return render(
        request,
        "reports.html",
        title="Reports",
        report=report,
        chart_src=data_url,
        date_from=date_from or default_from,
        date_to=date_to or default_to,
        may_report=who.can(Permission.REPORT_READ),
        may_packet=who.can(Permission.CASE_PACKET),
    )


@router.get("/reports/transparency.{fmt}")
def report_download(
    fmt: str,
    date_from: str,
    date_to: str,
    table: str = "",
    ctx: AppContext = Depends(get_ctx),
    who: Principal = web_require(Permission.REPORT_READ),
) -> Response:
    """The report as one HTML file (charts inline) or one table as CSV, as downloads."""
    if fmt not in ("html", "csv"):
        raise BadInputError("format must be html or csv", field="format")
    report = collect_report(ctx, date_from, date_to, actor=who.actor, audit_context=who.audit_context())
    stem = f"transparency-{report.period_from}-{report.period_to}"
    if fmt == "html":
        return Response(
            render_html(report, data_url),
            media_type="text/html",
            headers={"content-disposition": f'attachment; filename="{stem}.html"'},
        )
    tables = {s.key: s for s in report.sections if s.columns}
    if table not in tables:
        raise BadInputError(f"table must be one of {', '.join(tables)}", field="table")
    return Response(
        section_csv(tables[table]),
        media_type="text/csv",
        headers={"content-disposition": f'attachment; filename="{stem}-{table}.csv"'},
    )


@router.get("/reports/packet")
def packet_download(
    case: str,
    format: str = "pdf",
    ctx: AppContext = Depends(get_ctx),
    who: Principal = web_require(Permission.CASE_PACKET),
) -> Response:
    """A case's disclosure packet in the caller's scope (generation audited by the core)."""
    if format not in ("pdf", "json"):
        raise BadInputError("format must be pdf or json", field="format")
    mfa.require_fresh_second_factor(ctx, who, "downloading a case packet")
    made = collect_packet(
        ctx,
        case,
        actor=who.actor,
        scope=scope_for(who),
        audit_context=who.audit_context(),
        render=render_pdf if format == "pdf" else None,
    )
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in made.case_number)[:100]
    headers = {"content-disposition": f'attachment; filename="disclosure-packet-{safe}.{format}"'}
    if format == "json":
        return Response(made.to_json(), media_type="application/json", headers=headers)
    return Response(made.rendered, media_type="application/pdf", headers=headers)


# ------------------------------------------------------------------ legal holds


def _holds_page(request: Request, ctx: AppContext, status: int = 200, **extra: Any) -> Response:
    return render(
        request,
        "holds.html",
        status=status,
        title="Legal holds",
        holds=holds.list_holds(ctx, include_lifted=True),
        **extra,
    )


@router.get("/holds")
def holds_list(
    request: Request,
    done: str = "",
    ctx: AppContext = Depends(get_ctx),
    who: Principal = web_require(Permission.LEGAL_HOLD),
) -> Response:
    return _holds_page(request, ctx, notice=HOLD_NOTICES.get(done))


@router.post("/holds")
def hold_add(
    request: Request,
    ctx: AppContext = Depends(get_ctx),
    who: Principal = web_require(Permission.LEGAL_HOLD),
    form: FormData = Depends(form_data),
) -> Response:
    csrf_ok(request, form)
    gallery, external_id = str(form.get("gallery") or "").strip(), str(form.get("external_id") or "").strip()
    case_number = str(form.get("case_number") or "").strip()
    try:
        holds.add_hold(
            ctx,
            actor=who.actor,
            reason=str(form.get("reason") or ""),
            subject=(gallery, external_id) if gallery or external_id else None,
            case_number=case_number or None,
        )
    except FaceTrailError as exc:
        return _holds_page(request, ctx, status=status_for(exc), error=exc.message, form=dict(form))
    return see_other("/holds?done=added")


@router.post("/holds/{hold_id}/lift")
def hold_lift(
    hold_id: int,
    request: Request,
    ctx: AppContext = Depends(get_ctx),
    who: Principal = web_require(Permission.LEGAL_HOLD),
    form: FormData = Depends(form_data),
) -> Response:
    csrf_ok(request, form)
    try:
        holds.lift_hold(ctx, hold_id, actor=who.actor, reason=str(form.get("reason") or ""))
    except FaceTrailError as exc:
        return _holds_page(request, ctx, status=status_for(exc), error=f"Hold {hold_id}: {exc.message}")
    return see_other("/holds?done=lifted")


# ------------------------------------------------------------------ role grants (separation of duties)


@router.get("/role-grants")
def role_grants_page(
    request: Request,
    done: str = "",
    ctx: AppContext = Depends(get_ctx),
    who: Principal = web_require(Permission.ROLE_GRANTS_VIEW),
) -> Response:
    """Every grant of the reviewer or administrator role, pending first: reviewers and auditors watch them."""
    return render(
        request,
        "role_grants.html",
        title="Role grants",
        grants=role_grants.list_grants(ctx, who),
        may_decide=who.can(Permission.USERS_MANAGE),
        notice={"approve": "Grant approved.", "cancel": "Grant cancelled."}.get(done),
    )


@router.post("/role-grants/{grant_id}/{decision}")
def role_grant_decide(
    grant_id: int,
    decision: str,
    request: Request,
    ctx: AppContext = Depends(get_ctx),
    who: Principal = web_require(Permission.USERS_MANAGE),
    form: FormData = Depends(form_data),
) -> Response:
    """Approve (another administrator than the requester) or cancel; the core refuses and audits the rest."""
    csrf_ok(request, form)
    try:
        if decision == "approve":
            role_grants.approve_grant(ctx, who, grant_id)
        elif decision == "cancel":
            role_grants.cancel_grant(ctx, who, grant_id, str(form.get("reason") or ""))
        else:
            raise BadInputError("decision must be approve or cancel", field="decision")
    except FaceTrailError as exc:
        return render(
            request,
            "role_grants.html",
            status=status_for(exc),
            title="Role grants",
            grants=role_grants.list_grants(ctx, who),
            may_decide=True,
            error=f"Grant {grant_id}: {exc.message}",
        )
    return see_other(f"/role-grants?done={decision}")
