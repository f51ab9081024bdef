"""Search authorisation: the policy and training checks every search passes, and the state of prior-approval
requests and emergency searches (pending, approved, denied, expired; locked results).

- Every search (cases.searches.run_search calls ``authorize_search``): valid training, an allowed offense, a
  legal basis of the policy, the required fields, a candidate count within the policy's bounds. Where the
  policy asks for prior approval (offense or gallery), a search without an approved request is refused.
- A prior REQUEST's probe waits in a separate pending store (data_dir/probes-pending) until decided; an
  undecided request expires (its probe deleted) after approval.request_expiry_hours.
- An EMERGENCY search not approved within approval.emergency_window_hours (or denied) has its results locked
  for everyone: ``require_unlocked`` refuses (audited) every view of them.

The workflow that submits, approves and denies requests runs searches, so it sits above the search core in
facetrail.cases.requests; this module never imports facetrail.cases.
"""

from __future__ import annotations

import datetime as dt
import re
from enum import StrEnum
from typing import Any, Protocol

from sqlalchemy import select

from facetrail.audit.log import append_audit
from facetrail.audit.refusals import refuse
from facetrail.context import AppContext
from facetrail.errors import BadInputError, FaceTrailError, NotFoundError, PermissionDeniedError
from facetrail.gallery.imagestore import AnyImageStore, open_image_store
from facetrail.governance.models import SearchApproval
from facetrail.governance.policy import PROBE_DECLARATIONS, Policy, active_version
from facetrail.governance.training import require_training
from facetrail.policy.principal import Principal
from facetrail.policy.roles import Permission
from facetrail.storage.models import SearchRecord, User, utcnow
from facetrail.text import check_text, normalize_case_number


class ApprovalKind(StrEnum):
    PRIOR = "prior"  # asked for before the search runs
    EMERGENCY = "emergency"  # run at once, approved (or not) after the fact


class ApprovalStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    EXPIRED = "expired"  # undecided past its deadline


PRIOR, EMERGENCY = ApprovalKind.PRIOR, ApprovalKind.EMERGENCY
PENDING, APPROVED, DENIED, EXPIRED = (
    ApprovalStatus.PENDING,
    ApprovalStatus.APPROVED,
    ApprovalStatus.DENIED,
    ApprovalStatus.EXPIRED,
)
MAX_REASON = 5000


class ApprovalRequiredError(FaceTrailError):
    """The policy asks for prior approval of this search: submit it as a request (POST /search-requests)."""

    code = "approval_required"
    http_status = 409
    exit_code = 6


class OffenseNotAllowedError(BadInputError):
    code = "offense_not_allowed"


class ResultsLockedError(FaceTrailError):
    """An emergency search that was denied or not approved in time: its results are locked for everyone."""

    code = "results_locked"
    http_status = 403
    exit_code = 6


class RequestNotFoundError(NotFoundError):
    code = "request_not_found"


class SearchPurpose(Protocol):
    """What authorisation reads of a search (facetrail.cases.probe.SearchRequest has it)."""

    @property
    def gallery(self) -> str: ...
    @property
    def case_number(self) -> str: ...
    @property
    def offense(self) -> str: ...
    @property
    def legal_basis(self) -> str: ...
    @property
    def candidates(self) -> int: ...
    @property
    def probe_declaration(self) -> str: ...


def pending_store(ctx: AppContext) -> AnyImageStore:
    return open_image_store(ctx, "probes-pending")


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


# ------------------------------------------------------------------ the checks every search passes


class CaseNumberInvalidError(BadInputError):
    """The case number (after NFKC normalisation) does not match the policy's case_number_pattern."""

    code = "case_number_invalid"


def check_case_number(policy: Policy, case_number: str) -> str:
    """The case number NFKC-normalised, or a refusal: control characters, or not the policy's pattern."""
    text = normalize_case_number(case_number)
    if policy.search.case_number_pattern and text and re.fullmatch(policy.search.case_number_pattern, text) is None:
        raise CaseNumberInvalidError(
            f"case number {text!r} does not match the policy's case-number pattern "
            f"{policy.search.case_number_pattern!r} (look-alike letters from other scripts are refused)",
            field="case_number",
            pattern=policy.search.case_number_pattern,
        )
    return check_text("case_number", text, max_len=100)


class ProbeDeclarationRefusedError(BadInputError):
    """The probe is declared edited or a composite sketch (or not declared as anything known) and the policy
    does not accept that declaration."""

    code = "probe_declaration_refused"


def check_probe_declaration(policy: Policy, declaration: str) -> None:
    if declaration not in PROBE_DECLARATIONS:
        raise BadInputError(
            f"probe declaration {declaration!r} is not one of {list(PROBE_DECLARATIONS)}",
            field="probe_declaration",
            allowed=list(PROBE_DECLARATIONS),
        )
    if declaration not in policy.probes.accepted:
        raise ProbeDeclarationRefusedError(
            f"the policy does not accept probes declared {declaration!r} "
            f"(accepted: {', '.join(policy.probes.accepted)})",
            field="probe_declaration",
            allowed=list(policy.probes.accepted),
        )


def check_search_fields(policy: Policy, req: SearchPurpose) -> None:
    """Case number, offense, legal basis, required fields, candidate count and probe declaration against the
    policy."""
    rules = policy.search
    check_case_number(policy, req.case_number)
    if req.offense not in rules.allowed_offenses:
        raise OffenseNotAllowedError(
            f"offense {req.offense!r} is not allowed for search by the policy",
            field="offense",
            allowed=list(rules.allowed_offenses),
        )
    if ("legal_basis" in rules.required_fields or req.legal_basis) and req.legal_basis not in rules.legal_bases:
        raise BadInputError(
            f"legal basis {req.legal_basis!r} is not one of the policy's legal bases",
            field="legal_basis",
            allowed=list(rules.legal_bases),
        )
    if not rules.min_candidates <= req.candidates <= rules.max_candidates:
        raise BadInputError(
            f"candidates must be {rules.min_candidates}-{rules.max_candidates} (policy)", field="candidates"
        )
    check_probe_declaration(policy, req.probe_declaration)


def authorize_search(ctx: AppContext, who: Principal, req: SearchPurpose, approval_id: int | None) -> int:
    """Raise unless this search may run now; returns the policy version in force. ``approval_id`` names the
    approved request or the emergency declaration this run belongs to (set by this module only)."""
    version, policy = active_version(ctx)
    require_training(ctx, who)
    check_search_fields(policy, req)
    if approval_id is not None:
        with ctx.db.read() as s:
            row = s.get(SearchApproval, approval_id)
            if row is not None:
                s.expunge(row)
        usable = (
            row is not None
            and row.requester_id == who.user_id
            and row.search_id is None
            and ((row.kind == PRIOR and row.status == APPROVED) or (row.kind == EMERGENCY and row.status == PENDING))
        )
        if not usable:
            raise PermissionDeniedError(f"approval {approval_id} does not authorise this search")
        return version
    if policy.needs_prior_approval(req.offense, req.gallery):
        raise ApprovalRequiredError(
            f"the policy requires a reviewer's prior approval for {req.offense!r} searches of {req.gallery!r}: "
            "submit it as a search request",
            offense=req.offense,
            gallery=req.gallery,
        )
    return version


# ------------------------------------------------------------------ pending probes and expiry


def drop_pending_probe(ctx: AppContext, row_id: int) -> None:
    with ctx.db.transaction() as s:
        row = s.get(SearchApproval, row_id)
        assert row is not None
        row.probe_held = False
        sha = row.probe_sha256
        others = s.execute(
            select(SearchApproval.id)
            .where(SearchApproval.probe_sha256 == sha, SearchApproval.probe_held.is_(True), SearchApproval.id != row_id)
            .limit(1)
        ).first()
    if others is None:
        pending_store(ctx).remove(sha)


def expire_requests(ctx: AppContext, ids: list[int]) -> None:
    expired_requests = []
    with ctx.db.transaction() as s:
        for row in s.execute(
            select(SearchApproval).where(SearchApproval.id.in_(ids), SearchApproval.status == PENDING)
        ).scalars():
            row.status, row.decided_at = EXPIRED, utcnow()
            details = {
                "request_id": row.id,
                "case_number": row.case_number,
                "deadline": _aware(row.deadline or utcnow()).isoformat(),
            }
            if row.kind == EMERGENCY:
                append_audit(
                    s,
                    actor="system",
                    action="search.emergency.expired",
                    target=f"search:{row.search_id}",
                    details=details,
                )
            else:
                append_audit(
                    s,
                    actor="system",
                    action="search.request.expired",
                    target=f"request:{row.id}",
                    details={**details, "probe_sha256": row.probe_sha256},
                )
                expired_requests.append(row.id)
    for row_id in expired_requests:  # an undecided request's held probe goes with it
        drop_pending_probe(ctx, row_id)


def expire_overdue(ctx: AppContext) -> int:
    """Expire what is past its deadline: emergency searches not approved in their window (results lock) and
    prior-approval requests nobody decided in time (their held probes are deleted)."""
    now = utcnow()
    with ctx.db.read() as s:
        ids = [
            r.id
            for r in s.execute(select(SearchApproval).where(SearchApproval.status == PENDING)).scalars()
            if r.deadline is not None and _aware(r.deadline) < now
        ]
    if ids:
        expire_requests(ctx, ids)
    return len(ids)


# ------------------------------------------------------------------ locked results


def is_locked(row: SearchApproval | None) -> bool:
    if row is None or row.kind != EMERGENCY:
        return False
    if row.status in (DENIED, EXPIRED):
        return True
    return row.status == PENDING and row.deadline is not None and _aware(row.deadline) < utcnow()


def approval_for_search(ctx: AppContext, search_id: int) -> SearchApproval | None:
    with ctx.db.read() as s:
        row = s.execute(select(SearchApproval).where(SearchApproval.search_id == search_id)).scalar_one_or_none()
        if row is not None:
            s.expunge(row)
        return row


def results_locked(ctx: AppContext, search_id: int) -> bool:
    return is_locked(approval_for_search(ctx, search_id))


def require_unlocked(ctx: AppContext, who: Principal, record: SearchRecord, action: str) -> None:
    """Refuse (audited) any view of a locked emergency search's results, whoever asks."""
    if not results_locked(ctx, record.id):
        return
    raise refuse(
        ctx,
        who,
        action,
        f"search:{record.id}",
        ResultsLockedError(
            f"search {record.id} was an emergency search that was not approved in time (or was denied): "
            "its results are locked",
            search_id=record.id,
        ),
    )


# ------------------------------------------------------------------ listing


def request_dict(ctx: AppContext, row: SearchApproval) -> dict[str, Any]:
    with ctx.db.read() as s:
        names = dict(
            s.execute(
                select(User.id, User.username).where(
                    User.id.in_([i for i in (row.requester_id, row.decided_by_id) if i is not None])
                )
            ).all()
        )
    return {
        "id": row.id,
        "kind": row.kind,
        "status": EXPIRED if is_locked(row) and row.status == PENDING else row.status,
        "requester": names.get(row.requester_id),
        "gallery": row.gallery_name,
        "case_number": row.case_number,
        "offense": row.offense,
        "legal_basis": row.legal_basis,
        "justification": row.justification,
        "candidates": row.candidates,
        "probe_sha256": row.probe_sha256,
        "probe_held": row.probe_held,
        "policy_version": row.policy_version,
        "search_id": row.search_id,
        "requested_at": _aware(row.requested_at),
        "deadline": _aware(row.deadline) if row.deadline else None,
        "decided_by": names.get(row.decided_by_id) if row.decided_by_id else None,
        "decided_at": _aware(row.decided_at) if row.decided_at else None,
        "decision_reason": row.decision_reason,
        "results_locked": is_locked(row),
    }


def list_requests(ctx: AppContext, who: Principal, *, status: str | None = None) -> list[dict[str, Any]]:
    """Investigators: their own requests; reviewers: their unit's; auditors: all. Others: refused (audited)."""
    expire_overdue(ctx)
    query = select(SearchApproval).order_by(SearchApproval.id.desc())
    if who.can(Permission.SEARCH_METADATA_ALL):
        pass
    elif who.can(Permission.SEARCH_APPROVE) and who.unit_id is not None:
        query = query.where(SearchApproval.unit_id == who.unit_id)
    elif who.can(Permission.SEARCH_RUN) and who.user_id is not None:
        query = query.where(SearchApproval.requester_id == who.user_id)
    else:
        raise refuse(
            ctx,
            who,
            "search.request.list",
            "requests",
            PermissionDeniedError(f"role '{who.role}' may not view search requests"),
        )
    if status:
        query = query.where(SearchApproval.status == status)
    with ctx.db.read() as s:
        rows = list(s.execute(query.limit(500)).scalars())
        return [request_dict(ctx, r) for r in rows]
