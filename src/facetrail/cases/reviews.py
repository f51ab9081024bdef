"""Human review of a candidate list: the conclusions of the two examiners the system assigned (recorded through
the examination method, cases.examinations: docs/examination.md), read back blind (governance.release), and the
adjudication of a disagreement. There is no other way to record a decision on a candidate.
"""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import select

from facetrail.audit.refusals import refuse
from facetrail.cases.searches import SearchNotFoundError, deny, load_in_scope, review_dict, shown_candidates
from facetrail.context import AppContext
from facetrail.errors import BadInputError, FaceTrailError, PermissionDeniedError
from facetrail.governance import approvals, release
from facetrail.policy.principal import Principal
from facetrail.policy.roles import Permission
from facetrail.storage.models import CandidateReview
from facetrail.text import check_text

MAX_NOTES = 5000
E = TypeVar("E", bound=FaceTrailError)


def refuse_review(ctx: AppContext, who: Principal, target: str, error: E, *, action: str = "review.decide") -> E:
    """Audit a refused review act through the one refusal gate and hand the error back to raise."""
    return refuse(ctx, who, action, target, error)


def list_reviews(ctx: AppContext, who: Principal, search_id: int) -> list[dict[str, Any]]:
    """Every decision on a search in the caller's scope (auditors included: decisions are not faces)."""
    from facetrail.cases.searches import can_view_searches
    from facetrail.storage.models import User

    if not can_view_searches(who):
        raise deny(ctx, who, "review.list", f"search:{search_id}", f"role '{who.role}' may not view searches")
    record = load_in_scope(ctx, who, search_id, "review.list")
    approvals.require_unlocked(ctx, who, record, "review.list")  # a locked emergency search serves nothing
    with ctx.db.read() as s:
        rows = s.execute(
            select(CandidateReview, User.username)
            .join(User, User.id == CandidateReview.reviewer_id)
            .where(CandidateReview.search_id == search_id)
            .order_by(CandidateReview.rank, CandidateReview.id)
        ).all()
        listed = [review_dict(r, name) for r, name in rows]
    return release.visible_review_list(ctx, who, record, listed)  # blind two-person review


def adjudicate_candidate(
    ctx: AppContext, who: Principal, search_id: int, rank: int, decision: str, reason: str
) -> dict[str, Any]:
    """Settle the two reviewers' disagreement on the candidate at ``rank`` (a named adjudicator of the unit)."""
    target = f"search:{search_id}"
    try:
        text = check_text("reason", reason, max_len=MAX_NOTES, multiline=True)
    except BadInputError as exc:
        raise refuse_review(ctx, who, target, exc, action="review.adjudicate") from None
    if not who.can(Permission.REVIEW_ADJUDICATE):
        raise deny(ctx, who, "review.adjudicate", target, f"role '{who.role}' may not adjudicate")
    record = load_in_scope(ctx, who, search_id, "review.adjudicate")
    approvals.require_unlocked(ctx, who, record, "review.adjudicate")
    match = [c for c in shown_candidates(ctx, record) if int(c["rank"]) == rank]
    if not match:
        raise SearchNotFoundError(
            f"search {search_id} shows no candidate at rank {rank}", search_id=search_id, rank=rank
        )
    try:
        return release.adjudicate(ctx, who, record, int(match[0]["face_id"]), rank, decision, text)
    except (BadInputError, PermissionDeniedError) as exc:
        raise refuse_review(ctx, who, target, exc, action="review.adjudicate") from None
