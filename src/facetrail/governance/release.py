"""Two-person review before a lead is released.

A candidate becomes a RELEASED LEAD only when two different reviewers, neither of them the searcher, have
marked it possible_lead. Each reviewer decides blind: until they have recorded their own decision on a
candidate, the other reviewers' decisions on it are withheld from them (search view and review list). Once
two reviewers have decided a candidate, their decisions are final (a change of mind after seeing the other's
is refused and audited) and a disagreement is recorded ('review.disagreement') and shown to both.
Investigators see each candidate as "under review" (no identity, no face) until it is released.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from sqlalchemy import select

from facetrail.audit.log import append_audit
from facetrail.context import AppContext
from facetrail.errors import FaceTrailError, PermissionDeniedError
from facetrail.policy.principal import Principal
from facetrail.policy.roles import Permission
from facetrail.storage.models import CandidateReview, SearchRecord

RELEASE_REVIEWERS = 2
POSSIBLE_LEAD = "possible_lead"
UNDER_REVIEW = "under review"


class DecisionFinalError(FaceTrailError):
    code = "decision_final"
    http_status = 409
    exit_code = 6


def decisions_on(ctx: AppContext, search_id: int) -> dict[int, dict[int, str]]:
    """face id -> reviewer id -> current decision."""
    with ctx.db.read() as s:
        rows = s.execute(
            select(CandidateReview.face_id, CandidateReview.reviewer_id, CandidateReview.decision).where(
                CandidateReview.search_id == search_id
            )
        ).all()
    out: dict[int, dict[int, str]] = {}
    for face_id, reviewer_id, decision in rows:
        out.setdefault(int(face_id), {})[int(reviewer_id)] = decision
    return out


def is_released(decisions: dict[int, str], searcher_id: int | None) -> bool:
    leads = {r for r, d in decisions.items() if d == POSSIBLE_LEAD and r != searcher_id}
    return len(leads) >= RELEASE_REVIEWERS


def release_status(decisions: dict[int, str], searcher_id: int | None) -> str:
    if is_released(decisions, searcher_id):
        return "released_lead"
    if len(decisions) >= RELEASE_REVIEWERS and len(set(decisions.values())) > 1:
        return "disagreement"
    return "under_review"


def _is_reviewer(who: Principal) -> bool:
    return who.can(Permission.REVIEW_DECIDE)


def sees_as_searcher(who: Principal, searcher_id: int | None) -> bool:
    """Whether the caller sees a search as its searcher: investigators, and the searcher whatever their role
    is now (an investigator made a reviewer must not see who their own unreleased candidates are)."""
    return who.can(Permission.SEARCH_VIEW_OWN) or (who.user_id is not None and who.user_id == searcher_id)


def visible_reviews(
    who: Principal, decisions: dict[int, str], reviews: list[dict[str, Any]], searcher_id: int | None
) -> list[dict[str, Any]]:
    """The decisions on one candidate the caller may see: reviewers only their own until they have decided;
    investigators none until the candidate is released; others (auditors) all."""
    if who.user_id is not None and who.user_id == searcher_id:
        return reviews if is_released(decisions, searcher_id) else []
    if _is_reviewer(who):
        if who.user_id in decisions:
            return reviews
        return [r for r in reviews if r.get("reviewer") == who.username]
    if who.can(Permission.SEARCH_VIEW_OWN):
        return reviews if is_released(decisions, searcher_id) else []
    return reviews


def visible_candidates(ctx: AppContext, who: Principal, record: SearchRecord, candidates: list[Any]) -> list[Any]:
    """Candidates as the caller may see them: blind reviews for reviewers; for investigators, unreleased
    candidates masked as "under review" (rank and score kept; no identity, no decisions)."""
    decisions = decisions_on(ctx, record.id)
    out = []
    for c in candidates:
        mine = decisions.get(c.face_id, {})
        reviews = visible_reviews(who, mine, c.reviews, record.user_id)
        if sees_as_searcher(who, record.user_id) and not is_released(mine, record.user_id):
            out.append(replace(c, reviews=[], face_id=0, subject_id=0, subject_external_id=UNDER_REVIEW))
        else:
            out.append(replace(c, reviews=reviews))
    return out


def require_released(ctx: AppContext, who: Principal, record: SearchRecord, face_id: int, rank: int) -> None:
    """Investigators may see a candidate's face only once it is a released lead (refusal audited)."""
    if not sees_as_searcher(who, record.user_id):
        return
    if is_released(decisions_on(ctx, record.id).get(face_id, {}), record.user_id):
        return
    with ctx.db.transaction() as s:
        append_audit(
            s,
            actor=who.actor,
            action="search.thumbnail",
            target=f"search:{record.id}",
            outcome="denied",
            details={"rank": rank, "reason": "candidate under review (not a released lead)", **who.audit_context()},
        )
    raise PermissionDeniedError("this candidate is under review: it is shown once two reviewers release it")


def check_may_decide(ctx: AppContext, who: Principal, record: SearchRecord, face_id: int, rank: int) -> None:
    """Once two reviewers have decided a candidate, neither may change their decision (refusal audited)."""
    mine = decisions_on(ctx, record.id).get(face_id, {})
    others = [r for r in mine if r != who.user_id]
    if who.user_id in mine and len(others) >= RELEASE_REVIEWERS - 1:
        with ctx.db.transaction() as s:
            append_audit(
                s,
                actor=who.actor,
                action="review.decide",
                target=f"search:{record.id}",
                outcome="refused",
                details={
                    "rank": rank,
                    "face_id": face_id,
                    "reason": "decision final: the other reviewer has decided",
                    **who.audit_context(),
                },
            )
        raise DecisionFinalError("both reviewers have decided this candidate; decisions are now final")


def after_decision(ctx: AppContext, who: Principal, record: SearchRecord, face_id: int, rank: int) -> None:
    """Record a release or a disagreement the moment the second decision makes one."""
    mine = decisions_on(ctx, record.id).get(face_id, {})
    if len(mine) < RELEASE_REVIEWERS:
        return
    status = release_status(mine, record.user_id)
    action = {"released_lead": "lead.released", "disagreement": "review.disagreement"}.get(status)
    if action is None:
        return
    with ctx.db.transaction() as s:
        append_audit(
            s,
            actor=who.actor,
            action=action,
            target=f"search:{record.id}",
            details={
                "search_id": record.id,
                "case_number": record.case_number,
                "rank": rank,
                "face_id": face_id,
                "decisions": {str(k): v for k, v in sorted(mine.items())},
                **who.audit_context(),
            },
        )


def visible_review_list(
    ctx: AppContext, who: Principal, record: SearchRecord, reviews: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """A search's review list with, per candidate, only the decisions the caller may see (visible_reviews)."""
    decisions = decisions_on(ctx, record.id)
    out = []
    for face_id in dict.fromkeys(int(r["face_id"]) for r in reviews):
        mine = [r for r in reviews if int(r["face_id"]) == face_id]
        out.extend(visible_reviews(who, decisions.get(face_id, {}), mine, record.user_id))
    return out
