"""Two-person review before a lead is released, on the examination's conclusion scale (docs/examination.md).

A candidate's PANEL is the first two different reviewers (never the searcher) who conclude on it; their
conclusions (facetrail.examination.scale, recorded by cases.examinations) are their votes. It becomes a RELEASED
LEAD only when both panel conclusions are at or above the RELEASE LEVEL on the same-source side (the policy's
``examination.release_level``, of the policy the search ran under: so neither is neutral, "not suitable" or on
the different-sources side), or when they disagreed (one at or above the level, the other not) and the recorded
ADJUDICATION (table review_adjudications) says possible_lead (release). A third reviewer never votes: once the panel has
decided, further decisions are refused and audited (code review_complete), so a disagreement can never be
out-voted. A disagreement is recorded ('review.disagreement') and settled by the policy's rule
(``review.on_disagreement``): 'not_released' records the adjudication at once (actor 'system', not a lead);
'adjudicate' waits for a reviewer the policy names in ``review.adjudicators`` (not on the panel, not the
searcher), whose decision and reason are recorded ('review.adjudicate').

Each reviewer decides blind: until they have recorded their own conclusion on a candidate, the candidate itself
(score, rank, identity) and the other reviewers' conclusions on it are withheld from them (search view, review
list, review counts); afterwards the other conclusions are shown without the other reviewer's name. Once the
panel has decided, its decisions are final (a change of mind after seeing the other's is refused and audited).
Investigators see each candidate as "under review" (no identity, no face, no score) until it is released.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from typing import Any

from sqlalchemy import ForeignKey, Integer, String, Text, UniqueConstraint, select
from sqlalchemy.orm import Mapped, mapped_column

from facetrail.audit.log import append_audit
from facetrail.audit.refusals import refuse
from facetrail.context import AppContext
from facetrail.errors import BadInputError, FaceTrailError, PermissionDeniedError
from facetrail.examination.scale import DEFAULT_RELEASE_LEVEL, supports_same_source
from facetrail.policy.principal import Principal
from facetrail.policy.roles import Permission
from facetrail.storage.models import Base, CandidateReview, SearchRecord, utcnow

RELEASE_REVIEWERS = 2
POSSIBLE_LEAD = "possible_lead"  # an adjudication's release decision (conclusions use the scale)
UNDER_REVIEW = "under review"
ANOTHER_REVIEWER = "another reviewer"  # how a reviewer sees the other examiner's name: blind verification


ADJUDICATED_BY_RULE = "not_released"
ADJUDICATE = "adjudicate"


class DecisionFinalError(FaceTrailError):
    code = "decision_final"
    http_status = 409
    exit_code = 6


class ReviewCompleteError(FaceTrailError):
    """Two reviewers have decided the candidate: a third reviewer's decision is never counted."""

    code = "review_complete"
    http_status = 409
    exit_code = 6


class ReviewAdjudication(Base):
    """How a disagreement between the two panel reviewers of a candidate was settled (migration 0014)."""

    __tablename__ = "review_adjudications"
    __table_args__ = (UniqueConstraint("search_id", "face_id", name="uq_adjudication_once"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    search_id: Mapped[int] = mapped_column(ForeignKey("searches.id", ondelete="CASCADE"), index=True)
    face_id: Mapped[int] = mapped_column(Integer)
    rank: Mapped[int] = mapped_column(Integer)
    adjudicator_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))  # None: rule
    decision: Mapped[str] = mapped_column(String(40))  # possible_lead | not_a_match
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


def decisions_on(ctx: AppContext, search_id: int) -> dict[int, dict[int, str]]:
    """face id -> reviewer id -> current decision, reviewers in the order they first decided."""
    with ctx.db.read() as s:
        rows = s.execute(
            select(CandidateReview.face_id, CandidateReview.reviewer_id, CandidateReview.decision)
            .where(CandidateReview.search_id == search_id)
            .order_by(CandidateReview.id)
        ).all()
    out: dict[int, dict[int, str]] = {}
    for face_id, reviewer_id, decision in rows:
        out.setdefault(int(face_id), {})[int(reviewer_id)] = decision
    return out


def adjudications_on(ctx: AppContext, search_id: int) -> dict[int, str]:
    """face id -> the adjudication's decision."""
    with ctx.db.read() as s:
        rows = s.execute(
            select(ReviewAdjudication.face_id, ReviewAdjudication.decision).where(
                ReviewAdjudication.search_id == search_id
            )
        ).all()
    return {int(face_id): decision for face_id, decision in rows}


def panel(decisions: dict[int, str], searcher_id: int | None) -> dict[int, str]:
    """The first RELEASE_REVIEWERS reviewers (never the searcher) and their decisions: the only votes."""
    return dict([(r, d) for r, d in decisions.items() if r != searcher_id][:RELEASE_REVIEWERS])


def level_of(ctx: AppContext, record: SearchRecord) -> str:
    """The release level of the policy the search ran under (a later policy never lowers it for old searches)."""
    from facetrail.governance.policy import policy_of_version

    return policy_of_version(ctx, record.policy_version).examination.release_level


def is_released(
    decisions: dict[int, str],
    searcher_id: int | None,
    adjudication: str | None = None,
    level: str = DEFAULT_RELEASE_LEVEL,
) -> bool:
    votes = panel(decisions, searcher_id)
    if len(votes) < RELEASE_REVIEWERS:
        return False
    if all(supports_same_source(d, level) for d in votes.values()):
        return True
    return adjudication == POSSIBLE_LEAD


def release_status(
    decisions: dict[int, str],
    searcher_id: int | None,
    adjudication: str | None = None,
    level: str = DEFAULT_RELEASE_LEVEL,
) -> str:
    """'released_lead'; 'disagreement' (one panel conclusion at or above the level, the other not);
    'under_review' otherwise (also when both concluded below the level: no lead)."""
    if is_released(decisions, searcher_id, adjudication, level):
        return "released_lead"
    votes = panel(decisions, searcher_id)
    if len(votes) >= RELEASE_REVIEWERS and len({supports_same_source(d, level) for d in votes.values()}) > 1:
        return "disagreement"
    return "under_review"


def released_faces(ctx: AppContext, record: SearchRecord) -> set[int]:
    """The face ids of a search's released leads."""
    decisions, settled = decisions_on(ctx, record.id), adjudications_on(ctx, record.id)
    level = level_of(ctx, record)
    return {f for f, d in decisions.items() if is_released(d, record.user_id, settled.get(f), level)}


def _is_reviewer(who: Principal) -> bool:
    return who.can(Permission.REVIEW_DECIDE)


def sees_as_searcher(who: Principal, searcher_id: int | None) -> bool:
    """Whether the caller sees a search as its searcher: investigators, and the searcher whatever their role
    is now (an investigator made a reviewer must not see who their own unreleased candidates are)."""
    return who.can(Permission.SEARCH_VIEW_OWN) or (who.user_id is not None and who.user_id == searcher_id)


def visible_reviews(
    who: Principal,
    decisions: dict[int, str],
    reviews: list[dict[str, Any]],
    searcher_id: int | None,
    level: str = DEFAULT_RELEASE_LEVEL,
    adjudication: str | None = None,
) -> list[dict[str, Any]]:
    """The conclusions on one candidate the caller may see: reviewers only their own until they have concluded,
    then the others' without their names; investigators none until the candidate is released; others
    (auditors) all."""
    if who.user_id is not None and who.user_id == searcher_id:
        return reviews if is_released(decisions, searcher_id, adjudication, level) else []
    if _is_reviewer(who):
        if who.user_id in decisions:
            return [r if r.get("reviewer") == who.username else {**r, "reviewer": ANOTHER_REVIEWER} for r in reviews]
        return [r for r in reviews if r.get("reviewer") == who.username]
    if who.can(Permission.SEARCH_VIEW_OWN):
        return reviews if is_released(decisions, searcher_id, adjudication, level) else []
    return reviews


def reviewer_may_see(
    ctx: AppContext, who: Principal, decisions: dict[int, str], searcher_id: int | None, level: str
) -> bool:
    """Sequential unmasking in the search view: a reviewer sees a candidate (score, rank, identity) only once
    they have concluded on it, or as a named adjudicator of its disagreement."""
    if who.user_id in decisions:
        return True
    if release_status(decisions, searcher_id, None, level) != "disagreement" or not who.can(
        Permission.REVIEW_ADJUDICATE
    ):
        return False
    from facetrail.governance.policy import active_policy

    return who.username in active_policy(ctx).review.adjudicators


def visible_candidates(ctx: AppContext, who: Principal, record: SearchRecord, candidates: list[Any]) -> list[Any]:
    """Candidates as the caller may see them: for reviewers only those they have concluded on (sequential
    unmasking; docs/examination.md); for investigators, unreleased candidates masked as "under review" (no
    identity, no score, no decisions)."""
    decisions, settled = decisions_on(ctx, record.id), adjudications_on(ctx, record.id)
    level = level_of(ctx, record)
    examiner = _is_reviewer(who) and not sees_as_searcher(who, record.user_id)
    out = []
    for c in candidates:
        mine = decisions.get(c.face_id, {})
        if examiner and not reviewer_may_see(ctx, who, mine, record.user_id, level):
            continue
        reviews = visible_reviews(who, mine, c.reviews, record.user_id, level, settled.get(c.face_id))
        if sees_as_searcher(who, record.user_id) and not is_released(
            mine, record.user_id, settled.get(c.face_id), level
        ):
            # nothing but "under review": no identity, no score (a score would tell how close a stranger is)
            out.append(
                replace(
                    c,
                    reviews=[],
                    face_id=0,
                    subject_id=0,
                    subject_external_id=UNDER_REVIEW,
                    similarity=None,
                    estimated_fmr=None,
                )
            )
        else:
            out.append(replace(c, reviews=reviews))
    return out


def visible_review_count(
    ctx: AppContext, who: Principal, record: SearchRecord, reviews_by_face: dict[int, list[dict[str, Any]]]
) -> int:
    """How many review decisions of the search the caller may see (never a hint of a withheld decision)."""
    decisions, settled = decisions_on(ctx, record.id), adjudications_on(ctx, record.id)
    level = level_of(ctx, record)
    return sum(
        len(visible_reviews(who, decisions.get(face_id, {}), reviews, record.user_id, level, settled.get(face_id)))
        for face_id, reviews in reviews_by_face.items()
    )


def require_released(ctx: AppContext, who: Principal, record: SearchRecord, face_id: int, rank: int) -> None:
    """Investigators may see a candidate's face only once it is a released lead; reviewers only once they have
    concluded on it (sequential unmasking: a face by rank would tell the rank). Refusals audited."""
    if not sees_as_searcher(who, record.user_id):
        if not _is_reviewer(who):
            return
        decisions = decisions_on(ctx, record.id).get(face_id, {})
        if reviewer_may_see(ctx, who, decisions, record.user_id, level_of(ctx, record)):
            return
        raise refuse(
            ctx,
            who,
            "search.thumbnail",
            f"search:{record.id}",
            PermissionDeniedError("a candidate is shown here only after your conclusion on it (examination)"),
            details={"rank": rank, "reason": "sequential unmasking: no conclusion recorded on this candidate"},
        )
    if face_id in released_faces(ctx, record):
        return
    raise refuse(
        ctx,
        who,
        "search.thumbnail",
        f"search:{record.id}",
        PermissionDeniedError("this candidate is under review: it is shown once two reviewers release it"),
        details={"rank": rank, "reason": "candidate under review (not a released lead)"},
    )


def check_may_decide(ctx: AppContext, who: Principal, record: SearchRecord, face_id: int, rank: int) -> None:
    """Once the panel has decided a candidate, neither may change their decision and nobody else may decide
    it (a third vote would out-vote a disagreement); refusals audited."""
    mine = decisions_on(ctx, record.id).get(face_id, {})
    votes = panel(mine, record.user_id)
    if who.user_id not in votes and len(votes) >= RELEASE_REVIEWERS:
        raise refuse(
            ctx,
            who,
            "review.decide",
            f"search:{record.id}",
            ReviewCompleteError(
                "two reviewers have already decided this candidate; a third decision is never counted "
                "(a disagreement is settled by adjudication under the policy)"
            ),
            details={"rank": rank, "reason": "review complete: two reviewers decided"},
        )
    others = [r for r in votes if r != who.user_id]
    if who.user_id in votes and len(others) >= RELEASE_REVIEWERS - 1:
        raise refuse(
            ctx,
            who,
            "review.decide",
            f"search:{record.id}",
            DecisionFinalError("both reviewers have decided this candidate; decisions are now final"),
            details={"rank": rank, "reason": "decision final: the other reviewer has decided"},
        )


def after_decision(ctx: AppContext, who: Principal, record: SearchRecord, face_id: int, rank: int) -> None:
    """Record a release or a disagreement the moment the second decision makes one; under the policy rule
    'not_released' the disagreement's adjudication is recorded at once. Audit records name the candidate by
    rank only, and its face id once it is a released lead (never an unreleased candidate's identity)."""
    from facetrail.governance.policy import active_policy

    votes = panel(decisions_on(ctx, record.id).get(face_id, {}), record.user_id)
    if len(votes) < RELEASE_REVIEWERS:
        return
    status = release_status(votes, record.user_id, None, level_of(ctx, record))
    action = {"released_lead": "lead.released", "disagreement": "review.disagreement"}.get(status)
    if action is None:
        return
    rule = active_policy(ctx).review.on_disagreement
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
                **({"face_id": face_id} if status == "released_lead" else {"settled_by": rule}),
                "decisions": {str(k): v for k, v in votes.items()},
                **who.audit_context(),
            },
        )
        if status == "disagreement" and rule == ADJUDICATED_BY_RULE:
            reason = "policy rule review.on_disagreement = 'not_released': a disagreement is never a lead"
            s.add(
                ReviewAdjudication(
                    search_id=record.id,
                    face_id=face_id,
                    rank=rank,
                    adjudicator_id=None,
                    decision="not_a_match",
                    reason=reason,
                )
            )
            append_audit(
                s,
                actor="system",
                action="review.adjudicate",
                target=f"search:{record.id}",
                details={"search_id": record.id, "rank": rank, "decision": "not_a_match", "reason": reason},
            )


class AdjudicationError(BadInputError):
    code = "adjudication_not_possible"
    http_status = 409


def adjudicate(
    ctx: AppContext, who: Principal, record: SearchRecord, face_id: int, rank: int, decision: str, reason: str
) -> dict[str, Any]:
    """A named adjudicator settles the panel's disagreement on one candidate (checks and refusals audited by
    the caller's gate: cases.reviews.adjudicate_candidate)."""
    from facetrail.governance.policy import active_policy

    rules = active_policy(ctx).review
    if not who.can(Permission.REVIEW_ADJUDICATE) or who.username not in rules.adjudicators:
        raise PermissionDeniedError("only a reviewer the policy names in review.adjudicators settles a disagreement")
    if rules.on_disagreement != ADJUDICATE:
        raise AdjudicationError(f"the policy settles disagreements by its rule ({rules.on_disagreement!r})")
    if decision not in (POSSIBLE_LEAD, "not_a_match"):
        raise BadInputError("an adjudication decides possible_lead or not_a_match", field="decision")
    votes = panel(decisions_on(ctx, record.id).get(face_id, {}), record.user_id)
    if who.user_id in votes or who.user_id == record.user_id:
        raise PermissionDeniedError("the adjudicator is neither one of the two reviewers nor the searcher")
    if release_status(votes, record.user_id, None, level_of(ctx, record)) != "disagreement":
        raise AdjudicationError("there is no disagreement to adjudicate on this candidate")
    with ctx.db.transaction() as s:
        existing = s.execute(
            select(ReviewAdjudication).where(
                ReviewAdjudication.search_id == record.id, ReviewAdjudication.face_id == face_id
            )
        ).scalar_one_or_none()
        if existing is not None:
            raise AdjudicationError("this disagreement has already been adjudicated")
        row = ReviewAdjudication(
            search_id=record.id,
            face_id=face_id,
            rank=rank,
            adjudicator_id=who.user_id,
            decision=decision,
            reason=reason,
        )
        s.add(row)
        s.flush()
        append_audit(
            s,
            actor=who.actor,
            action="review.adjudicate",
            target=f"search:{record.id}",
            details={
                "search_id": record.id,
                "case_number": record.case_number,
                "rank": rank,
                "decision": decision,
                "reason": reason,
                "panel": {str(k): v for k, v in votes.items()},
                **({"face_id": face_id} if decision == POSSIBLE_LEAD else {}),
                **who.audit_context(),
            },
        )
        if decision == POSSIBLE_LEAD:
            append_audit(
                s,
                actor=who.actor,
                action="lead.released",
                target=f"search:{record.id}",
                details={
                    "search_id": record.id,
                    "case_number": record.case_number,
                    "rank": rank,
                    "face_id": face_id,
                    "by_adjudication": row.id,
                    **who.audit_context(),
                },
            )
        return {
            "search_id": record.id,
            "rank": rank,
            "adjudicator": who.username,
            "decision": decision,
            "reason": reason,
            "created_at": row.created_at,
        }


def visible_review_list(
    ctx: AppContext, who: Principal, record: SearchRecord, reviews: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """A search's review list with, per candidate, only the decisions the caller may see (visible_reviews)."""
    decisions, settled = decisions_on(ctx, record.id), adjudications_on(ctx, record.id)
    level = level_of(ctx, record)
    names_candidates = _is_reviewer(who)  # a reviewer sees only candidates they concluded on (visible_reviews)
    out = []
    for face_id in dict.fromkeys(int(r["face_id"]) for r in reviews):
        mine = [r for r in reviews if int(r["face_id"]) == face_id]
        here = decisions.get(face_id, {})
        shown = visible_reviews(who, here, mine, record.user_id, level, settled.get(face_id))
        if not names_candidates and not is_released(here, record.user_id, settled.get(face_id), level):
            shown = [{**r, "face_id": 0} for r in shown]  # auditors: the decision, never who it was about
        out.extend(shown)
    return out
