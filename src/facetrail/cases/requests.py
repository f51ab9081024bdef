"""The search-approval workflow: prior-approval requests and emergency searches, submitted by investigators and
decided by a reviewer of the requester's unit who is not the requester (a denial needs a reason).

- A prior REQUEST stores the probe in the pending store until decided: an approval runs the search as the
  requester (results visible to them) and a denial drops the probe; either way the pending copy is removed,
  and the kept-probe rule (keep_probe_images + retention) applies to the search.
- An EMERGENCY search cites the policy's emergency legal basis and runs at once; a reviewer must approve it
  within approval.emergency_window_hours, else (denied, or the window passed) its results are locked.
Every refusal is audited through facetrail.audit.refusals. The rules themselves (who may search what, when
results lock) are facetrail.governance.approvals; this module runs searches, so it sits above cases.searches.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from facetrail.accounts import mfa
from facetrail.accounts.service import principal_for
from facetrail.audit.log import append_audit
from facetrail.audit.refusals import refuse
from facetrail.cases.probe import SearchRequest, analyze_upload, choose_face
from facetrail.cases.searches import SearchView, run_search, search_echo
from facetrail.context import AppContext
from facetrail.errors import BadInputError, ConflictError, FaceTrailError, PermissionDeniedError
from facetrail.governance.approvals import (
    APPROVED,
    DENIED,
    EMERGENCY,
    MAX_REASON,
    PENDING,
    PRIOR,
    RequestNotFoundError,
    check_search_fields,
    drop_pending_probe,
    expire_requests,
    pending_store,
    request_dict,
)
from facetrail.governance.models import SearchApproval
from facetrail.governance.policy import active_version
from facetrail.governance.training import require_training
from facetrail.policy.principal import Principal
from facetrail.policy.roles import Permission
from facetrail.storage.models import User, utcnow
from facetrail.text import check_text, normalize_case_number


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


@dataclass(frozen=True)
class Submitted:
    request: dict[str, Any]
    search: SearchView | None  # emergency searches run at once


def submit(ctx: AppContext, who: Principal, probe: bytes, req: SearchRequest, *, emergency: bool) -> Submitted:
    """A prior-approval request (stored, with its probe, until a reviewer decides) or an emergency search
    (runs now; to be approved within the policy's window). Refusals are audited."""
    action = "search.emergency" if emergency else "search.request"
    target = f"case:{req.case_number}"
    echo = search_echo(req)
    try:
        who.require(Permission.SEARCH_RUN)
        version, policy = active_version(ctx)
        require_training(ctx, who)
        check_search_fields(policy, req)
        if emergency and req.legal_basis != policy.approval.emergency_legal_basis:
            raise BadInputError(
                f"an emergency search must cite {policy.approval.emergency_legal_basis!r}", field="legal_basis"
            )
        justification = check_text("justification", req.justification, max_len=2000)
        analysis = analyze_upload(ctx, probe)
        chosen = choose_face(analysis, req.face_index)
        if chosen is None:
            raise BadInputError("the probe has no usable face (or face_index is out of range)", field="probe")
    except FaceTrailError as exc:
        raise refuse(ctx, who, action, target, exc, details=echo) from None
    now = utcnow()
    row = SearchApproval(
        kind=EMERGENCY if emergency else PRIOR,
        status=PENDING,
        requester_id=who.user_id,
        unit_id=who.unit_id,
        gallery_name=req.gallery,
        case_number=normalize_case_number(req.case_number),
        offense=req.offense,
        legal_basis=req.legal_basis,
        justification=justification,
        candidates=req.candidates,
        face_index=chosen.index,
        probe_declaration=req.probe_declaration,
        probe_sha256=analysis.sha256,
        probe_held=not emergency,
        policy_version=version,
        requested_at=now,
        decision_reason="",
        deadline=now
        + dt.timedelta(
            hours=policy.approval.emergency_window_hours if emergency else policy.approval.request_expiry_hours
        ),
    )
    if not emergency:
        pending_store(ctx).put(analysis.sha256, probe)
        with ctx.db.transaction() as s:
            s.add(row)
            s.flush()
            append_audit(
                s,
                actor=who.actor,
                action=action,
                target=f"request:{row.id}",
                details={
                    **echo,
                    "request_id": row.id,
                    "probe_sha256": analysis.sha256,
                    "policy_version": version,
                    **who.audit_context(),
                },
            )
        return Submitted(request_dict(ctx, row), None)
    with ctx.db.transaction() as s:
        s.add(row)
        s.flush()
        row_id = row.id
    try:
        view = run_search(ctx, who, probe, req, approval_id=row_id)
    except BaseException:
        with ctx.db.transaction() as s:
            s.delete(s.get(SearchApproval, row_id))
        raise
    with ctx.db.transaction() as s:
        stored = s.get(SearchApproval, row_id)
        assert stored is not None
        stored.search_id = view.search_id
        s.flush()
        append_audit(
            s,
            actor=who.actor,
            action=action,
            target=f"search:{view.search_id}",
            details={
                **echo,
                "request_id": row_id,
                "search_id": view.search_id,
                "deadline": _aware(stored.deadline or now).isoformat(),
                "policy_version": version,
                **who.audit_context(),
            },
        )
        return Submitted(request_dict(ctx, stored), view)


def _load_for_decision(ctx: AppContext, who: Principal, request_id: int, action: str) -> SearchApproval:
    target = f"request:{request_id}"
    if not who.can(Permission.SEARCH_APPROVE):
        raise refuse(
            ctx, who, action, target, PermissionDeniedError(f"role '{who.role}' may not approve or deny searches")
        )
    with ctx.db.read() as s:
        row = s.get(SearchApproval, request_id)
        if row is not None:
            s.expunge(row)
    if row is None or row.unit_id is None or row.unit_id != who.unit_id:
        raise refuse(ctx, who, action, target, RequestNotFoundError(f"no search request {request_id}"))
    if row.requester_id == who.user_id:
        raise refuse(ctx, who, action, target, PermissionDeniedError("nobody approves or denies their own search"))
    if row.status != PENDING:
        raise refuse(ctx, who, action, target, ConflictError(f"request {request_id} is already {row.status}"))
    if row.deadline is not None and _aware(row.deadline) < utcnow():
        expire_requests(ctx, [row.id])
        if row.kind == PRIOR:
            raise refuse(
                ctx,
                who,
                action,
                target,
                ConflictError(
                    f"request {request_id} expired undecided; its probe was deleted: the investigator may ask again"
                ),
            )
        raise refuse(
            ctx,
            who,
            action,
            target,
            ConflictError(
                f"the approval window of emergency search {row.search_id} has passed: its results are locked"
            ),
        )
    return row


def _decide(ctx: AppContext, who: Principal, row_id: int, status: str, reason: str, action: str) -> SearchApproval:
    with ctx.db.transaction() as s:
        row = s.get(SearchApproval, row_id)
        assert row is not None
        if row.status != PENDING:  # decided concurrently
            raise ConflictError(f"request {row_id} is already {row.status}")
        row.status, row.decided_by_id, row.decided_at, row.decision_reason = status, who.user_id, utcnow(), reason
        s.flush()
        append_audit(
            s,
            actor=who.actor,
            action=action,
            target=f"request:{row_id}",
            details={
                "request_id": row_id,
                "kind": row.kind,
                "case_number": row.case_number,
                "search_id": row.search_id,
                "reason": reason,
                **who.audit_context(),
            },
        )
        s.expunge(row)
        return row


def _clean_reason(reason: str, required: bool) -> str:
    return check_text("reason", reason, max_len=MAX_REASON, required=required, multiline=True)


def approve(ctx: AppContext, who: Principal, request_id: int, reason: str = "") -> dict[str, Any]:
    """Approve a pending request (it then runs as the requester) or an emergency search (after the fact)."""
    try:
        text = _clean_reason(reason, required=False)
    except BadInputError as exc:
        raise refuse(ctx, who, "search.approve", f"request:{request_id}", exc) from None
    row = _load_for_decision(ctx, who, request_id, "search.approve")
    mfa.require_fresh_second_factor(ctx, who, "approving a search request")
    row = _decide(ctx, who, row.id, APPROVED, text, "search.approve")
    if row.kind == PRIOR:
        _run_approved(ctx, row)
    with ctx.db.read() as s:
        fresh = s.get(SearchApproval, row.id)
        assert fresh is not None
        return request_dict(ctx, fresh)


def deny(ctx: AppContext, who: Principal, request_id: int, reason: str) -> dict[str, Any]:
    """Deny a pending request (its probe is dropped) or an emergency search (its results lock). Reason required."""
    try:
        text = _clean_reason(reason, required=True)
    except BadInputError as exc:
        raise refuse(ctx, who, "search.deny", f"request:{request_id}", exc) from None
    row = _load_for_decision(ctx, who, request_id, "search.deny")
    row = _decide(ctx, who, row.id, DENIED, text, "search.deny")
    if row.kind == PRIOR:
        drop_pending_probe(ctx, row.id)
    with ctx.db.read() as s:
        fresh = s.get(SearchApproval, row.id)
        assert fresh is not None
        return request_dict(ctx, fresh)


def _run_approved(ctx: AppContext, row: SearchApproval) -> None:
    """Run an approved request as its requester; the results are theirs. The pending probe is then dropped."""
    from facetrail.cases.probe import SearchRequest
    from facetrail.cases.searches import run_search

    with ctx.db.read() as s:
        user = s.get(User, row.requester_id)
        assert user is not None
        requester = principal_for(user, via="approval")
    probe = pending_store(ctx).get(row.probe_sha256)
    if probe is None:
        raise FileNotFoundError(f"the held probe {row.probe_sha256} is no longer in the store")
    req = SearchRequest(
        gallery=row.gallery_name,
        case_number=row.case_number,
        offense=row.offense,
        legal_basis=row.legal_basis,
        justification=row.justification,
        candidates=row.candidates,
        face_index=row.face_index,
        probe_declaration=row.probe_declaration,
    )
    try:
        view = run_search(ctx, requester, probe, req, approval_id=row.id)
    finally:
        drop_pending_probe(ctx, row.id)
    with ctx.db.transaction() as s:
        stored = s.get(SearchApproval, row.id)
        assert stored is not None
        stored.search_id = view.search_id
