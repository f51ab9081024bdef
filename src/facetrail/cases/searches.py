"""Searches from the server: purpose checked against the configured lists, probe faces and quality checked
before anything runs, results scoped to the searcher's unit, and every view of faces audited.

Scope (who sees which search):
- investigator (search.view_own): their own searches, with results;
- reviewer (search.view_unit): their unit's searches, with results;
- auditor (search.metadata_all): every search's metadata, never candidates' faces;
- anyone else: nothing. A search outside the caller's scope is "not found" (404), never "forbidden", so its
  existence is not revealed; the attempt is audited with outcome 'not_found'.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.sql import Select

from facetrail.audit.log import append_audit
from facetrail.audit.refusals import refuse
from facetrail.cases import hooks
from facetrail.cases.probe import ProbeFace, SearchRequest, analyze_upload, choose_face
from facetrail.context import AppContext
from facetrail.errors import BadInputError, FaceTrailError, NotFoundError, PermissionDeniedError
from facetrail.examination import unmasking
from facetrail.faces.pipeline import PIPELINE_LOCK
from facetrail.gallery.search import (
    LEADS_NOTICE,
    candidate_faces,
    search_gallery,
    validate_candidates,
    validate_purpose,
)
from facetrail.governance import approvals as governance
from facetrail.governance import release
from facetrail.governance.policy import active_policy, active_version, similarity_floor_for
from facetrail.policy.principal import Principal
from facetrail.policy.roles import Permission
from facetrail.storage.models import CandidateReview, Face, SearchRecord, Unit, User

SUBJECT_CHECK = "verify_subject"
VIEW_PERMISSIONS = (Permission.SEARCH_VIEW_OWN, Permission.SEARCH_VIEW_UNIT, Permission.SEARCH_METADATA_ALL)


class SearchNotFoundError(NotFoundError):
    code = "search_not_found"


@dataclass(frozen=True)
class CandidateView:
    rank: int
    face_id: int
    subject_id: int
    subject_external_id: str
    similarity: float | None  # None: an investigator's view of a candidate still under review
    estimated_fmr: float | None  # subject-level: a subject with k faces has k chances (faces.subject_score)
    reviews: list[dict[str, Any]] = field(default_factory=list)
    # the subject behind the candidate (issue 11); None/empty for an investigator while under review
    faces_enrolled: int | None = None
    faces_above_floor: int | None = None
    faces: list[dict[str, Any]] = field(default_factory=list)  # {face_id, similarity}, best first
    score_rule: str | None = None
    face_fmr: float | None = None  # one comparison's FMR at this score (× the gallery's faces: expected strangers)


@dataclass(frozen=True)
class SearchView:
    """A search as the caller may see it. ``candidates`` is None when the caller may not see results."""

    search_id: int
    created_at: dt.datetime
    actor: str
    user_id: int | None
    unit: str | None
    gallery: str
    model_id: str
    case_number: str
    offense: str
    legal_basis: str
    justification: str
    probe_sha256: str
    probe_stored: bool
    face_index: int
    faces_in_probe: int
    candidates_requested: int
    candidates_shown: int
    similarity_floor: float
    candidates: list[CandidateView] | None
    reviews_count: int
    probe_declaration: str = "original"  # what the searcher declared the probe to be
    notice: str = LEADS_NOTICE
    kind: str = "search"  # or 'verify_subject': a 1:1 check of a named subject
    gallery_size: int | None = None  # known right after the search only
    probe_face: ProbeFace | None = None  # the searched face's aligned crop, right after the search only


# ------------------------------------------------------------------ scope


def deny(ctx: AppContext, who: Principal, action: str, target: str, reason: str) -> PermissionDeniedError:
    """A refused view or decision (audited 'denied', with the reason)."""
    return refuse(ctx, who, action, target, PermissionDeniedError(reason), details={"reason": reason})


def can_view_searches(who: Principal) -> bool:
    return any(who.can(p) for p in VIEW_PERMISSIONS)


def may_see_results(who: Principal) -> bool:
    """Faces and candidates: the searcher and their unit's reviewers; never auditors or administrators."""
    return who.can(Permission.SEARCH_VIEW_OWN) or who.can(Permission.SEARCH_VIEW_UNIT)


def _scoped(query: Select[Any], who: Principal) -> Select[Any]:
    """The searches the caller may see; a reviewer's search on which their examination task is open is not among
    them (examination.unmasking.open_task_excluded)."""
    hidden = unmasking.open_task_excluded(who, SearchRecord.id)
    scoped = _scoped_by_role(query, who)
    return scoped if hidden is None else scoped.where(hidden)


def _scoped_by_role(query: Select[Any], who: Principal) -> Select[Any]:
    if who.can(Permission.SEARCH_METADATA_ALL):
        return query
    if who.can(Permission.SEARCH_VIEW_UNIT) and who.unit_id is not None:
        return query.where(SearchRecord.unit_id == who.unit_id)
    if who.can(Permission.SEARCH_VIEW_OWN) and who.user_id is not None:
        return query.where(SearchRecord.user_id == who.user_id)
    return query.where(SearchRecord.id.is_(None))  # nothing


def load_in_scope(ctx: AppContext, who: Principal, search_id: int, action: str) -> SearchRecord:
    """The search if the caller may see it; otherwise audit the attempt and answer 'not found'."""
    with ctx.db.read() as s:
        record = s.execute(_scoped(select(SearchRecord), who).where(SearchRecord.id == search_id)).scalar_one_or_none()
        if record is not None:
            s.expunge(record)
            return record
        examining = (
            s.execute(_scoped_by_role(select(SearchRecord.id), who).where(SearchRecord.id == search_id)).first()
            is not None
        )
    reason = (
        "withheld from the caller while their examination task on it is open"
        if examining
        else "no such search in the caller's scope"
    )
    raise refuse(
        ctx,
        who,
        action,
        f"search:{search_id}",
        SearchNotFoundError(f"no search {search_id}", search_id=search_id),  # the same answer either way
        details={"reason": reason},
        outcome="not_found",
    )


# ------------------------------------------------------------------ running a search


def search_options(ctx: AppContext) -> dict[str, Any]:
    rules = active_policy(ctx).search  # the policy document supersedes the server settings
    return {
        "offenses": list(rules.allowed_offenses),
        "legal_bases": list(rules.legal_bases),
        "min_candidates": rules.min_candidates,
        "max_candidates": rules.max_candidates,
        "default_candidates": rules.default_candidates,
        "similarity_floor": rules.similarity_floor,
        "notice": LEADS_NOTICE,
    }


def _refuse(
    ctx: AppContext,
    who: Principal,
    req: SearchRequest,
    error: FaceTrailError,
    probe_sha256: str | None,
) -> FaceTrailError:
    return refuse(
        ctx,
        who,
        "search",
        f"gallery:{req.gallery}",
        error,
        details={
            **search_echo(req),
            "face_index": req.face_index,
            "candidates_requested": req.candidates,
            "probe_sha256": probe_sha256,
        },
        outcome="refused",
    )


def search_echo(req: SearchRequest) -> dict[str, Any]:
    """What identifies a refused search or request in its audit record (never the justification or probe)."""
    return {
        "case_number": req.case_number,
        "offense": req.offense,
        "legal_basis": req.legal_basis,
        "gallery": req.gallery,
    }


def _check_fields(ctx: AppContext, req: SearchRequest) -> None:
    """Everything but the probe, before the probe is analysed."""
    validate_purpose(req.case_number, req.offense, req.justification)
    validate_candidates(req.candidates)  # offense, legal basis and the policy's bounds: governance.authorize_search


def run_search(
    ctx: AppContext, who: Principal, probe: bytes, req: SearchRequest, *, approval_id: int | None = None
) -> SearchView:
    """Run a 1:N search for the caller's case. Refusals (no valid training, outside the policy, approval
    required, bad fields, several faces and no choice, failed quality) are audited with outcome 'refused'; the
    search itself is recorded and audited by the core. ``approval_id``: set by facetrail.governance only."""
    who.require(Permission.SEARCH_RUN)
    sha: str | None = None
    try:
        governance.authorize_search(ctx, who, req, approval_id)
        _check_fields(ctx, req)
        hooks.before_search(ctx, who, req, active_version(ctx)[1], approval_id)  # limits, case verification
        analysis = analyze_upload(ctx, probe)
        sha = analysis.sha256
        chosen = choose_face(analysis, req.face_index)
    except FaceTrailError as exc:
        raise _refuse(ctx, who, req, exc, sha) from None
    # No usable face: the core analyses the probe itself and gives (and audits) the precise error.
    analyzed = (analysis.image, analysis.embedded(ctx, chosen.index), len(analysis.faces)) if chosen else None
    with PIPELINE_LOCK:
        result = search_gallery(
            ctx,
            probe,
            gallery=req.gallery,
            case_number=req.case_number,
            offense=req.offense,
            reason=req.justification,
            actor=who.actor,
            candidates=req.candidates,
            face_index=chosen.index if chosen else req.face_index,
            write_thumbnails=False,
            user_id=who.user_id,
            unit_id=who.unit_id,
            legal_basis=req.legal_basis,
            analyzed=analyzed,
            similarity_floor=active_policy(ctx).search.similarity_floor,
            probe_declaration=req.probe_declaration,
        )
    hooks.after_search(ctx, who, result.search_id)  # anomaly detection: never blocks or breaks the search
    view = get_search(ctx, who, result.search_id, audit=False)
    return SearchView(**{**view.__dict__, "gallery_size": result.gallery_size, "probe_face": chosen})


def run_subject_check(ctx: AppContext, who: Principal, probe: bytes, req: SearchRequest, subject: str) -> SearchView:
    """A 1:1 check of a named subject (``facetrail verify-subject``) is a search: the same gate as run_search
    (training, case number, offense, legal basis, justification, prior approval; refusals audited), recorded as
    a search of kind 'verify_subject' and reviewed like one. Its answer reveals nothing until two reviewers
    released the lead: an unknown subject, one below the floor and one under review all answer alike."""
    from facetrail.gallery.search import search_subject

    who.require(Permission.SEARCH_RUN)
    sha: str | None = None
    try:
        governance.authorize_search(ctx, who, req, None)
        _check_fields(ctx, req)
        hooks.before_search(ctx, who, req, active_version(ctx)[1], None)  # limits, case verification
        analysis = analyze_upload(ctx, probe)
        sha = analysis.sha256
        chosen = choose_face(analysis, req.face_index)
        if chosen is None:
            raise BadInputError("the probe has no usable face (or face_index is out of range)", field="probe")
    except FaceTrailError as exc:
        raise _refuse(ctx, who, req, exc, sha) from None
    with PIPELINE_LOCK:
        result = search_subject(
            ctx,
            probe,
            gallery=req.gallery,
            subject=subject,
            case_number=req.case_number,
            offense=req.offense,
            reason=req.justification,
            actor=who.actor,
            analyzed=(analysis.image, analysis.embedded(ctx, chosen.index), len(analysis.faces)),
            user_id=who.user_id,
            unit_id=who.unit_id,
            legal_basis=req.legal_basis,
            similarity_floor=active_policy(ctx).search.similarity_floor,
            probe_declaration=req.probe_declaration,
        )
    hooks.after_search(ctx, who, result.search_id)  # anomaly detection: never blocks or breaks the search
    return get_search(ctx, who, result.search_id, audit=False)


# ------------------------------------------------------------------ history and views


def _reviews_by_face(ctx: AppContext, search_id: int) -> dict[int, list[dict[str, Any]]]:
    with ctx.db.read() as s:
        rows = s.execute(
            select(CandidateReview, User.username)
            .join(User, User.id == CandidateReview.reviewer_id)
            .where(CandidateReview.search_id == search_id)
            .order_by(CandidateReview.id)
        ).all()
        out: dict[int, list[dict[str, Any]]] = {}
        for review, username in rows:
            out.setdefault(review.face_id, []).append(review_dict(review, username))
        return out


def review_dict(review: CandidateReview, reviewer: str) -> dict[str, Any]:
    created = review.created_at if review.created_at.tzinfo else review.created_at.replace(tzinfo=dt.UTC)
    return {
        "id": review.id,
        "search_id": review.search_id,
        "rank": review.rank,
        "face_id": review.face_id,
        "reviewer": reviewer,
        "decision": review.decision,
        "notes": review.notes,
        "created_at": created,
    }


def shown_candidates(ctx: AppContext, record: SearchRecord) -> list[dict[str, Any]]:
    floor = similarity_floor_for(ctx, record.policy_version)
    return [c for c in record.candidates if float(c["similarity"]) >= floor]


def _candidate_view(c: dict[str, Any], floor: float, reviews: dict[int, list[dict[str, Any]]]) -> CandidateView:
    enrolled, above, faces = candidate_faces(c, floor)
    return CandidateView(
        rank=int(c["rank"]),
        face_id=int(c["face_id"]),
        subject_id=int(c["subject_id"]),
        subject_external_id=str(c["subject_external_id"]),
        similarity=float(c["similarity"]),
        estimated_fmr=float(c["fmr"]),
        reviews=reviews.get(int(c["face_id"]), []),
        faces_enrolled=enrolled,
        faces_above_floor=above,
        faces=faces,
        score_rule=str(c.get("score_rule", "max")),
        face_fmr=float(c.get("face_fmr", c["fmr"])),
    )


def _view(ctx: AppContext, who: Principal, record: SearchRecord, unit: str | None) -> SearchView:
    shown = shown_candidates(ctx, record)
    reviews = _reviews_by_face(ctx, record.id)
    candidates = None
    if may_see_results(who):
        floor = similarity_floor_for(ctx, record.policy_version)
        candidates = [_candidate_view(c, floor, reviews) for c in shown]
        candidates = release.visible_candidates(ctx, who, record, candidates)  # blind two-person review
        # a masked candidate ("under review": face id 0) tells nothing of its subject, not even its photo count
        candidates = [
            c
            if c.face_id
            else replace(c, faces_enrolled=None, faces_above_floor=None, faces=[], score_rule=None, face_fmr=None)
            for c in candidates
        ]
        if record.kind == SUBJECT_CHECK and release.sees_as_searcher(who, record.user_id):
            # a 1:1 check answers its searcher nothing until released: not even that a candidate exists
            candidates = [c for c in candidates if c.subject_external_id != release.UNDER_REVIEW]
    created = record.created_at if record.created_at.tzinfo else record.created_at.replace(tzinfo=dt.UTC)
    hidden = unmasking.story_withheld(who, unmasking.examination_state(ctx, [record.id]).get(record.id, {}))
    return SearchView(
        search_id=record.id,
        created_at=created,
        actor=record.actor,
        user_id=record.user_id,
        unit=unit,
        gallery=record.gallery_name,
        model_id=record.model_id,
        case_number=unmasking.WITHHELD if hidden else record.case_number,
        offense=unmasking.WITHHELD if hidden else record.offense,
        legal_basis=record.legal_basis,
        justification=unmasking.WITHHELD if hidden else record.reason,
        probe_sha256=unmasking.WITHHELD if hidden else record.probe_sha256,
        probe_stored=record.probe_stored,
        face_index=record.face_index,
        faces_in_probe=record.faces_in_probe,
        candidates_requested=record.candidates_requested,
        candidates_shown=_shown_count(ctx, who, record, len(shown)),
        similarity_floor=similarity_floor_for(ctx, record.policy_version),
        candidates=candidates,
        kind=record.kind,
        reviews_count=release.visible_review_count(ctx, who, record, reviews),
        probe_declaration=record.probe_declaration,
    )


def _shown_count(ctx: AppContext, who: Principal, record: SearchRecord, shown: int) -> int:
    """How many candidates the caller is told were shown: for a 1:1 check, its searcher learns only released
    leads (an unknown subject, one below the floor and one under review must look alike)."""
    if record.kind == SUBJECT_CHECK and release.sees_as_searcher(who, record.user_id):
        return len(release.released_faces(ctx, record))
    return shown


def _unit_name(ctx: AppContext, unit_id: int | None) -> str | None:
    if unit_id is None:
        return None
    with ctx.db.read() as s:
        unit = s.get(Unit, unit_id)
        return unit.name if unit else None


def get_search(ctx: AppContext, who: Principal, search_id: int, *, audit: bool = True) -> SearchView:
    """One search in the caller's scope. Showing results (faces) is audited as 'search.view'."""
    if not can_view_searches(who):
        raise deny(ctx, who, "search.view", f"search:{search_id}", f"role '{who.role}' may not view searches")
    record = load_in_scope(ctx, who, search_id, "search.view")
    if may_see_results(who):
        governance.require_unlocked(ctx, who, record, "search.view")
    view = _view(ctx, who, record, _unit_name(ctx, record.unit_id))
    if audit:
        with ctx.db.transaction() as s:
            append_audit(
                s,
                actor=who.actor,
                action="search.view",
                target=f"search:{search_id}",
                details={
                    "results_shown": view.candidates is not None,
                    "candidates": view.candidates_shown,
                    **who.audit_context(),
                },
            )
    return view


@dataclass(frozen=True)
class SearchPage:
    total: int
    items: list[SearchView]


def list_searches(
    ctx: AppContext, who: Principal, *, limit: int = 50, offset: int = 0, case_number: str | None = None
) -> SearchPage:
    """Search history in the caller's scope, newest first: metadata only (no candidates, no faces)."""
    if not can_view_searches(who):
        raise deny(ctx, who, "search.list", "searches", f"role '{who.role}' may not view searches")
    joined = select(SearchRecord, Unit.name).outerjoin(Unit, Unit.id == SearchRecord.unit_id)
    query = _scoped(joined, who)  # type: ignore[arg-type]
    if case_number:
        query = query.where(SearchRecord.case_number == case_number)
    with ctx.db.read() as s:
        total = s.execute(select(func.count()).select_from(query.subquery())).scalar_one()
        rows = s.execute(query.order_by(SearchRecord.id.desc()).limit(limit).offset(offset)).all()
        ids = [record.id for record, _ in rows]
        counts = dict(
            s.execute(
                select(CandidateReview.search_id, func.count())
                .where(CandidateReview.search_id.in_(ids))
                .group_by(CandidateReview.search_id)
            ).all()
        )
        items = []
        state = unmasking.examination_state(ctx, ids)
        for record, unit in rows:
            hidden = unmasking.story_withheld(who, state.get(record.id, {}))
            if hidden and case_number:
                total -= 1  # a filter by case number must not tell an examiner which case their search is
                continue
            shown_count = int(counts.get(record.id, 0))
            if shown_count and not who.can(Permission.SEARCH_METADATA_ALL):
                # a blind reviewer must not learn from the count that someone else decided (nor an investigator)
                shown_count = release.visible_review_count(ctx, who, record, _reviews_by_face(ctx, record.id))
            floor = similarity_floor_for(ctx, record.policy_version)
            items.append(
                SearchView(
                    search_id=record.id,
                    created_at=record.created_at
                    if record.created_at.tzinfo
                    else record.created_at.replace(tzinfo=dt.UTC),
                    actor=record.actor,
                    user_id=record.user_id,
                    unit=unit,
                    gallery=record.gallery_name,
                    model_id=record.model_id,
                    case_number=unmasking.WITHHELD if hidden else record.case_number,
                    offense=unmasking.WITHHELD if hidden else record.offense,
                    legal_basis=record.legal_basis,
                    justification=unmasking.WITHHELD if hidden else record.reason,
                    probe_sha256=unmasking.WITHHELD if hidden else record.probe_sha256,
                    probe_stored=record.probe_stored,
                    face_index=record.face_index,
                    faces_in_probe=record.faces_in_probe,
                    candidates_requested=record.candidates_requested,
                    candidates_shown=_shown_count(
                        ctx, who, record, sum(1 for c in record.candidates if float(c["similarity"]) >= floor)
                    ),
                    similarity_floor=floor,
                    candidates=None,
                    kind=record.kind,
                    reviews_count=shown_count,
                    probe_declaration=record.probe_declaration,
                )
            )
    return SearchPage(total=int(total), items=items)


def candidate_thumbnail(
    ctx: AppContext, who: Principal, search_id: int, rank: int, face_id: int | None = None
) -> bytes:
    """A shown candidate's enrolled face (JPEG): its best face, or with ``face_id`` another of the candidate
    subject's listed faces (expanding the candidate). Only for those who may see results, and for the searcher
    only once the candidate is a released lead; audited by rank (and the face's place in the candidate's list),
    never by face id."""
    if not may_see_results(who):
        raise deny(
            ctx, who, "search.thumbnail", f"search:{search_id}", f"role '{who.role}' may not see candidates' faces"
        )
    record = load_in_scope(ctx, who, search_id, "search.thumbnail")
    governance.require_unlocked(ctx, who, record, "search.thumbnail")
    match = [c for c in shown_candidates(ctx, record) if int(c["rank"]) == rank]
    if match:
        release.require_released(ctx, who, record, int(match[0]["face_id"]), rank)
    wanted, position = None, 0
    if match:
        if face_id is None:
            wanted = int(match[0]["face_id"])
        else:
            listed = [f["face_id"] for f in candidate_faces(match[0], 0.0)[2]]
            if face_id in listed:
                wanted, position = face_id, listed.index(face_id) + 1
    with ctx.db.transaction() as s:
        face = s.get(Face, wanted) if wanted is not None else None
        if face is not None:
            append_audit(
                s,
                actor=who.actor,
                action="search.thumbnail",
                target=f"search:{search_id}",
                # rank only: the log names no candidate (and for an expanded face, its place in the candidate)
                details={"rank": rank, **({"face": position} if face_id is not None else {}), **who.audit_context()},
            )
            return bytes(face.thumbnail)
    raise refuse(
        ctx,
        who,
        "search.thumbnail",
        f"search:{search_id}",
        NotFoundError(
            f"search {search_id} shows no candidate at rank {rank}"
            + (" with that face" if face_id is not None else "")
            + " (or its face was deleted)"
        ),
        details={"rank": rank},
        outcome="not_found",
    )
