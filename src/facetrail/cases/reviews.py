"""Human review of a candidate list: a reviewer of the searcher's unit (never the searcher) marks each
candidate possible_lead / not_a_match / inconclusive, with notes. The decision, its author and any change of
mind are recorded and audited ('review.decide'); the latest decision per reviewer and candidate stands.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, TypeVar

from sqlalchemy import select

from facetrail.accounts import mfa
from facetrail.audit.log import append_audit
from facetrail.audit.refusals import refuse
from facetrail.cases.searches import SearchNotFoundError, deny, load_in_scope, review_dict, shown_candidates
from facetrail.context import AppContext
from facetrail.errors import BadInputError, FaceTrailError, PermissionDeniedError
from facetrail.governance import approvals, release
from facetrail.policy.principal import Principal
from facetrail.policy.roles import Permission
from facetrail.storage.models import CandidateReview, utcnow
from facetrail.text import check_text

MAX_NOTES = 5000
E = TypeVar("E", bound=FaceTrailError)


class Decision(StrEnum):
    POSSIBLE_LEAD = "possible_lead"
    NOT_A_MATCH = "not_a_match"
    INCONCLUSIVE = "inconclusive"


def refuse_review(ctx: AppContext, who: Principal, target: str, error: E, *, action: str = "review.decide") -> E:
    """Audit a refused decision (bad notes or decision, not allowed) through the one refusal gate and hand the
    error back to raise."""
    return refuse(ctx, who, action, target, error)


def review_candidate(
    ctx: AppContext, who: Principal, search_id: int, rank: int, decision: str, notes: str = ""
) -> dict[str, Any]:
    """Record the caller's decision on the candidate at ``rank`` of a search of their unit."""
    target = f"search:{search_id}"
    if not who.can(Permission.REVIEW_DECIDE):
        raise deny(ctx, who, "review.decide", target, f"role '{who.role}' may not review candidates")
    try:
        choice = Decision(decision)
    except ValueError:
        raise refuse_review(
            ctx,
            who,
            target,
            BadInputError(f"decision must be one of {', '.join(d.value for d in Decision)}", field="decision"),
        ) from None
    try:
        notes = check_text("notes", notes, max_len=MAX_NOTES, required=False, multiline=True)
    except BadInputError as exc:
        raise refuse_review(ctx, who, target, exc) from None
    record = load_in_scope(ctx, who, search_id, "review.decide")  # the unit's searches only, else 404
    if record.user_id is not None and record.user_id == who.user_id:
        raise deny(ctx, who, "review.decide", target, "nobody reviews their own search")
    approvals.require_unlocked(ctx, who, record, "review.decide")
    match = [c for c in shown_candidates(ctx, record) if int(c["rank"]) == rank]
    if not match:
        raise SearchNotFoundError(
            f"search {search_id} shows no candidate at rank {rank}", search_id=search_id, rank=rank
        )
    face_id = int(match[0]["face_id"])
    release.check_may_decide(ctx, who, record, face_id, rank)
    if choice is Decision.POSSIBLE_LEAD and who.user_id is not None:  # the second agreeing review releases
        after = {**release.decisions_on(ctx, search_id).get(face_id, {}), who.user_id: choice.value}
        if release.is_released(after, record.user_id):
            mfa.require_fresh_second_factor(ctx, who, "releasing a lead")
    with ctx.db.transaction() as s:
        review = s.execute(
            select(CandidateReview).where(
                CandidateReview.search_id == search_id,
                CandidateReview.face_id == face_id,
                CandidateReview.reviewer_id == who.user_id,
            )
        ).scalar_one_or_none()
        previous = review.decision if review else None
        if review is None:
            review = CandidateReview(
                search_id=search_id,
                face_id=face_id,
                rank=rank,
                reviewer_id=who.user_id,
                decision=choice.value,
                notes=notes,
            )
            s.add(review)
        else:
            review.decision, review.notes, review.created_at = choice.value, notes, utcnow()
        s.flush()
        append_audit(
            s,
            actor=who.actor,
            action="review.decide",
            target=target,
            details={
                "search_id": search_id,
                "case_number": record.case_number,
                "rank": rank,  # never the face id: the audit log names no unreleased candidate
                "decision": choice.value,
                "previous_decision": previous,
                "notes": notes,
                **who.audit_context(),
            },
        )
        decided = review_dict(review, who.username)
    release.after_decision(ctx, who, record, face_id, rank)
    return decided


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
