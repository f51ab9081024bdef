"""A case's disclosure packet: everything FaceTrail recorded about the face searches of one case.

Every search of the case is listed, including those that found nothing and those whose candidates were all
rejected, with: the probe (its aligned face if the probe image was kept, else its SHA-256), who ran it and
when, the approval and policy version (see the hooks below), the model and thresholds, the candidates that
were shown, every review decision with its author and time (the current ones and the full history from the
audit log), and the search attempts that were refused. packet_pdf.py renders it; the JSON beside it holds the
same.

Disclosure: a packet names only RELEASED leads (subject, face, score). A shown candidate that was not released
appears by rank with its votes and decisions, its identity and score withheld; a candidate below the
similarity floor does not appear at all. A locked emergency search shows neither candidates nor reviews.

Generating a packet is audited ('case.packet') in the same transaction as its reads.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from facetrail.audit.log import append_audit, canonical_json
from facetrail.context import AppContext
from facetrail.errors import BadInputError, FaceTrailError, NotFoundError
from facetrail.gallery.search import LEADS_NOTICE, candidate_faces, probe_store
from facetrail.governance.release import ReviewAdjudication
from facetrail.policy.principal import Principal
from facetrail.policy.roles import Permission
from facetrail.reports.common import (
    RELEASE_REVIEWERS,
    aware,
    chain_status,
    group_decisions,
    iso,
    release_levels,
    thresholds_for,
)
from facetrail.storage.models import AuditRecord, CandidateReview, SearchRecord, Unit, User

FORMAT_VERSION = 1
NOT_RECORDED = "not recorded"
NOT_RELEASED = "not released (identity withheld)"
log = logging.getLogger(__name__)


class CaseNotFoundError(NotFoundError):
    code = "case_not_found"


@dataclass(frozen=True)
class PacketScope:
    """Whose searches the packet may cover, and whether it may show the probe's face."""

    unit_id: int | None  # None: every unit (auditors, the local operator)
    include_probe_images: bool
    description: str
    # A reviewer's packet must not break blind two-person review: other reviewers' decisions on a candidate
    # stay withheld until this reviewer has decided it too or the review is complete.
    blind_reviewer: str | None = None


@dataclass
class Packet:
    case_number: str
    audit_seq: int  # the 'case.packet' record of this generation
    data: dict[str, Any]  # what the JSON file holds and the PDF shows
    rendered: bytes | None = None  # the PDF, when collect_packet was asked to render it

    def to_json(self) -> str:
        return json.dumps(self.data, indent=2, ensure_ascii=False, default=str) + "\n"


WITHHELD_FROM_EXAMINER = "withheld until your examination of this search is complete"


def scope_for(who: Principal) -> PacketScope:
    """Reviewers: their unit's searches, with the probe's face; auditors: every unit, never a face."""
    from facetrail.cases.searches import may_see_results

    if who.can(Permission.SEARCH_METADATA_ALL):
        return PacketScope(None, False, "all units (auditor: probe images withheld, hashes only)")
    if who.unit_id is None:
        return PacketScope(-1, False, "no unit (the caller belongs to none)")
    blind = who.username if who.can(Permission.REVIEW_DECIDE) else None
    return PacketScope(who.unit_id, may_see_results(who), f"unit {who.unit_name}", blind)


OPERATOR_SCOPE = PacketScope(None, True, "all units (local operator)")


# ------------------------------------------------------------------ hooks for the governance features
# Filled by facetrail.governance (issue 5): approvals, emergency searches and the policy version of a search.
# None means "none" for approvals (no approval was needed) and "not recorded" for a search older than policies.


def approval_of(session: Session, record: SearchRecord) -> dict[str, Any] | None:
    """Who approved the search request, when and why (None: the search needed no prior approval)."""
    from facetrail.governance.reporting import approval_entry

    return approval_entry(session, record.id, "prior")


def emergency_of(session: Session, record: SearchRecord) -> dict[str, Any] | None:
    """Whether the search was an emergency search and how its after-the-fact approval ended."""
    from facetrail.governance.reporting import approval_entry

    return approval_entry(session, record.id, "emergency")


def policy_version_of(session: Session, record: SearchRecord) -> str | None:
    """The policy version in force when the search ran."""
    return None if record.policy_version is None else str(record.policy_version)


# ------------------------------------------------------------------ collecting


def _person(users: dict[int, User], units: dict[int, str], user_id: int | None, actor: str) -> dict[str, Any]:
    user = users.get(user_id) if user_id is not None else None
    if user is None:
        return {"actor": actor, "username": None, "display_name": None, "role": None, "unit": None}
    return {
        "actor": actor,
        "username": user.username,
        "display_name": user.display_name or user.username,
        "role": user.role,
        "unit": units.get(user.unit_id) if user.unit_id is not None else None,
    }


def _search_audit(session: Session, case_number: str) -> list[AuditRecord]:
    """The audit log's 'search' records naming this case: the runs (outcome ok) and the refused attempts."""
    needle = f'"case_number":{canonical_json(case_number)}'
    query = (
        select(AuditRecord)
        .where(AuditRecord.action == "search", AuditRecord.details.contains(needle, autoescape=True))
        .order_by(AuditRecord.seq)
    )
    return list(session.execute(query).scalars())


def _decision_history(session: Session, search_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    """Every review decision ever made on these searches (changes of mind included), from the audit log."""
    targets = [f"search:{i}" for i in search_ids]
    rows = session.execute(
        select(AuditRecord)
        .where(AuditRecord.action == "review.decide", AuditRecord.outcome == "ok", AuditRecord.target.in_(targets))
        .order_by(AuditRecord.seq)
    ).scalars()
    history: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for rec in rows:
        d = json.loads(rec.details)
        history[int(d["search_id"])].append(
            {
                "audit_seq": rec.seq,
                "at": rec.ts,
                "reviewer": rec.actor,
                "rank": d.get("rank"),
                "decision": d.get("decision"),
                "previous_decision": d.get("previous_decision"),
                "notes": d.get("notes", ""),
            }
        )
    return history


def _candidates(
    ctx: AppContext, record: SearchRecord, reviews: list[dict[str, Any]], decisions: dict[tuple[int, int], Any]
) -> list[dict[str, Any]]:
    from facetrail.governance.policy import similarity_floor_for

    floor = similarity_floor_for(ctx, record.policy_version)  # the floor of the policy the search ran under
    out = []
    for c in record.candidates:
        if float(c["similarity"]) < floor:
            continue  # never shown to anyone: not in any packet either (not even its score)
        face_id, rank = int(c["face_id"]), int(c["rank"])
        grouped = decisions.get((record.id, face_id))
        released = bool(grouped and grouped.released(record.user_id))
        enrolled, above, faces = candidate_faces(c, floor)
        entry: dict[str, Any] = {
            "rank": rank,
            "subject_id": int(c["subject_id"]),
            "subject_external_id": str(c["subject_external_id"]),
            "face_id": face_id,
            "similarity": float(c["similarity"]),
            "estimated_fmr": float(c["fmr"]),  # subject-level (a subject with k faces has k chances)
            "score_rule": str(c.get("score_rule", "max")),
            "faces_enrolled": enrolled,
            "faces_above_floor": above,
            "faces": faces,  # the candidate subject's faces, best first: {face_id, similarity}
            "shown": True,
            "decisions": [r for r in reviews if r["rank"] == rank],
            "possible_lead_votes": grouped.leads_from(record.user_id) if grouped else 0,
            "released": released,
        }
        if not released:  # an unreleased candidate is named by nobody: rank, votes and decisions only
            entry.update(
                subject_id=None, subject_external_id=NOT_RELEASED, face_id=None, faces_enrolled=None, faces=None
            )
            entry["faces_above_floor"] = None
            entry["similarity"] = entry["estimated_fmr"] = None
        out.append(entry)
    return out


def _outcome(candidates: list[dict[str, Any]]) -> str:
    shown = [c for c in candidates if c["shown"]]
    if not shown:
        return "no candidate shown (none scored above the similarity floor)"
    if any(c["released"] for c in shown):
        return f"released lead(s): {RELEASE_REVIEWERS} examiners concluded at or above the release level"
    if any(c["possible_lead_votes"] for c in shown):
        return f"lead(s) supported by fewer than {RELEASE_REVIEWERS} examiners: not released"
    if any(c["decisions"] for c in shown):
        return "no lead: no examined candidate reached the release level with both examiners"
    return "not reviewed"


def _search_entry(
    ctx: AppContext,
    session: Session,
    record: SearchRecord,
    people: dict[str, Any],
    reviews: list[dict[str, Any]],
    history: list[dict[str, Any]],
    decisions: dict[Any, Any],
    audit_seq: int | None,
) -> dict[str, Any]:
    emergency = emergency_of(session, record)
    # A locked emergency search's results are seen by no one, in a packet neither (nor its reviews, whose
    # notes and ranks describe the candidates); the entry says why.
    locked = bool(emergency and emergency["results_locked"])
    candidates = [] if locked else _candidates(ctx, record, reviews, decisions)
    if locked:
        history = []
    return {
        "search_id": record.id,
        "run_at": iso(record.created_at),
        "run_by": people["run_by"],
        "audit_seq": audit_seq,
        "approval": approval_of(session, record),
        "emergency": emergency,
        "policy_version": policy_version_of(session, record),
        "gallery": record.gallery_name,
        "offense": record.offense,
        "legal_basis": record.legal_basis or None,
        "justification": record.reason,
        "model": thresholds_for(ctx, record.model_id),
        "probe": {
            "sha256": record.probe_sha256,
            "image_kept": record.probe_stored,
            "face_index": record.face_index,
            "faces_in_probe": record.faces_in_probe,
            "thumbnail_jpeg_base64": None,
            "thumbnail_note": "probe image not kept: identified by its SHA-256 only"
            if not record.probe_stored
            else None,
        },
        "candidates_requested": record.candidates_requested,
        "candidates": candidates,
        "candidates_shown": sum(1 for c in candidates if c["shown"]),
        "outcome": _outcome(candidates),
        "review_history": history,
    }


def _refused_attempts(
    records: list[AuditRecord],
    scope: PacketScope,
    unit_of_actor: dict[str, int | None],
) -> list[dict[str, Any]]:
    out = []
    for rec in records:
        if rec.outcome == "ok":
            continue
        if scope.unit_id is not None and unit_of_actor.get(rec.actor) != scope.unit_id:
            continue
        d = json.loads(rec.details)
        error = d.get("error") if isinstance(d.get("error"), dict) else {}
        out.append(
            {
                "audit_seq": rec.seq,
                "at": rec.ts,
                "actor": rec.actor,
                "outcome": rec.outcome,
                "gallery": d.get("gallery"),
                "offense": d.get("offense"),
                "legal_basis": d.get("legal_basis"),
                "probe_sha256": d.get("probe_sha256"),
                "error_code": error.get("code"),
                "error": error.get("message"),
            }
        )
    return out


def _clean_case_number(case_number: str) -> str:
    text = (case_number or "").strip()
    if not text or len(text) > 100 or any(ord(c) < 32 for c in text):
        raise BadInputError("case number must be 1-100 printable characters", field="case_number")
    return text


class PacketRenderError(FaceTrailError):
    """The packet's data was collected but could not be rendered (a fault of FaceTrail's, audited 'failed')."""

    code = "packet_render_failed"
    http_status = 500


def collect_packet(
    ctx: AppContext,
    case_number: str,
    *,
    actor: str,
    scope: PacketScope,
    audit_context: dict[str, Any] | None = None,
    render: Callable[[Packet], bytes] | None = None,
) -> Packet:
    """Read the case's records, add the probe faces, render (when ``render`` is given) and audit the generation.

    The 'case.packet' record says what was made: outcome 'ok' only once the packet rendered; a render that
    fails is audited with outcome 'failed' and raises PacketRenderError (a packet that nobody received is never
    recorded as delivered). The PDF names its own audit record, so it is rendered once before that record is
    written (to know that it renders) and once after (with the record's number).
    Raises CaseNotFoundError (audited, outcome 'not_found') when the scope holds no search for the case."""
    case_number = _clean_case_number(case_number)
    chain = chain_status(ctx)  # its own snapshot: the chain as it stands when the packet is made
    generated_at = dt.datetime.now(dt.UTC)
    with ctx.db.transaction() as s:
        query = select(SearchRecord).where(SearchRecord.case_number == case_number)
        if scope.unit_id is not None:
            query = query.where(SearchRecord.unit_id == scope.unit_id)
        records = list(s.execute(query.order_by(SearchRecord.id)).scalars())
        if not records:
            append_audit(
                s,
                actor=actor,
                action="case.packet",
                target=f"case:{case_number}",
                outcome="not_found",
                details={"scope": scope.description, **(audit_context or {})},
            )
            found = None
        else:
            found = _collect(ctx, s, case_number, records, scope, chain, generated_at, actor)
            search_ids = [r.id for r in records]
    if found is None:
        raise CaseNotFoundError(
            f"no search is recorded for case {case_number!r} in {scope.description}", case_number=case_number
        )
    if scope.include_probe_images:
        for entry in found["searches"]:
            _add_probe_thumbnail(ctx, entry)
    details = {
        "scope": scope.description,
        "search_ids": search_ids,
        "candidates_listed": sum(len(e["candidates"]) for e in found["searches"]),
        "review_decisions": sum(len(e["review_history"]) for e in found["searches"]),
        "probe_images_included": scope.include_probe_images,
        "audit_chain_ok": chain["ok"],
        "format": "pdf" if render is not None else "json",
        **(audit_context or {}),
    }
    if render is not None:
        _render_or_audit(ctx, render, Packet(case_number, 0, found), actor, case_number, details)
    with ctx.db.transaction() as s:
        seq = append_audit(s, actor=actor, action="case.packet", target=f"case:{case_number}", details=details).seq
    found["audit_seq"] = seq
    packet = Packet(case_number, seq, found)
    if render is not None:
        packet.rendered = _render_or_audit(ctx, render, packet, actor, case_number, {**details, "audit_seq": seq})
    return packet


def _render_or_audit(
    ctx: AppContext,
    render: Callable[[Packet], bytes],
    packet: Packet,
    actor: str,
    case_number: str,
    details: dict[str, Any],
) -> bytes:
    try:
        return render(packet)
    except Exception as exc:  # any fault of the renderer: audited as failed, never as delivered
        log.exception("the packet of case %r could not be rendered", case_number)
        with ctx.db.transaction() as s:
            append_audit(
                s,
                actor=actor,
                action="case.packet",
                target=f"case:{case_number}",
                outcome="failed",
                details={**details, "error": {"type": type(exc).__name__, "message": str(exc)[:500]}},
            )
        raise PacketRenderError(
            f"the disclosure packet of case {case_number!r} could not be rendered ({type(exc).__name__}); "
            "the failure is recorded in the audit log"
        ) from exc


def _collect(
    ctx: AppContext,
    s: Session,
    case_number: str,
    records: list[SearchRecord],
    scope: PacketScope,
    chain: dict[str, Any],
    generated_at: dt.datetime,
    actor: str,
) -> dict[str, Any]:
    ids = [r.id for r in records]
    review_rows = list(
        s.execute(
            select(CandidateReview)
            .where(CandidateReview.search_id.in_(ids))
            .order_by(CandidateReview.search_id, CandidateReview.rank, CandidateReview.id)
        ).scalars()
    )
    user_ids = {r.user_id for r in records if r.user_id is not None} | {r.reviewer_id for r in review_rows}
    users = {u.id: u for u in s.execute(select(User).where(User.id.in_(user_ids))).scalars()}
    units = {u.id: u.name for u in s.execute(select(Unit)).scalars()}
    reviews_by_search: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for r in review_rows:
        reviewer = _person(users, units, r.reviewer_id, "")
        reviews_by_search[r.search_id].append(
            {
                "rank": r.rank,
                "reviewer": reviewer["username"],
                "reviewer_name": reviewer["display_name"],
                "decision": r.decision,
                "notes": r.notes,
                "decided_at": iso(r.created_at),
            }
        )
    settled = list(s.execute(select(ReviewAdjudication).where(ReviewAdjudication.search_id.in_(ids))).scalars())
    decisions = group_decisions(review_rows, settled, release_levels(ctx, records))
    history = _decision_history(s, ids)
    search_audit = _search_audit(s, case_number)
    audit_seq_of = {json.loads(a.details).get("search_id"): a.seq for a in search_audit if a.outcome == "ok"}
    actor_units = {f"user:{u.username}": u.unit_id for u in s.execute(select(User)).scalars()}
    searches = [
        _search_entry(
            ctx,
            s,
            r,
            {"run_by": _person(users, units, r.user_id, r.actor)},
            reviews_by_search.get(r.id, []),
            history.get(r.id, []),
            decisions,
            audit_seq_of.get(r.id),
        )
        for r in records
    ]
    if scope.blind_reviewer is not None:
        examining = _examining(s, scope.blind_reviewer, ids)
        examined = _examining(s, scope.blind_reviewer, ids, complete=True)
        for entry in searches:
            _withhold_undecided(entry, scope.blind_reviewer)
            if entry["search_id"] in examining:
                _withhold_for_examiner(entry)
            elif entry["search_id"] in examined:
                _name_no_other_examiner(entry, scope.blind_reviewer)
    refused = _refused_attempts(search_audit, scope, actor_units)
    created = [aware(r.created_at) for r in records]
    lead_reports = _lead_reports(ctx, s, records, searches, scope)
    if scope.blind_reviewer is not None:  # blind verification: the other examiner stays unnamed
        from facetrail.governance.release import ANOTHER_REVIEWER

        for report in lead_reports:
            report["examinations"] = [
                e
                if e.get("reviewer") == scope.blind_reviewer
                else {**e, "reviewer": ANOTHER_REVIEWER, "reviewer_name": ANOTHER_REVIEWER}
                for e in report.get("examinations", [])
            ]
    return {
        "kind": "disclosure_packet",
        "format_version": FORMAT_VERSION,
        "case_number": case_number,
        "generated_at": generated_at.isoformat(timespec="seconds"),
        "generated_by": actor,
        "scope": scope.description,
        "notice": LEADS_NOTICE,
        "audit_chain": chain,
        "audit_seq": None,
        "summary": {
            "searches": len(records),
            "first_search_at": min(created).isoformat(timespec="seconds"),
            "last_search_at": max(created).isoformat(timespec="seconds"),
            "searches_with_released_leads": sum(1 for e in searches if any(c["released"] for c in e["candidates"])),
            "searches_without_candidates_shown": sum(1 for e in searches if e["candidates_shown"] == 0),
            "review_decisions": sum(len(e["review_history"]) for e in searches),
            "refused_attempts": len(refused),
            "lead_reports": len(lead_reports),
        },
        "searches": searches,
        "refused_attempts": refused,
        "lead_reports": lead_reports,
    }


def _lead_reports(
    ctx: AppContext, s: Session, records: list[SearchRecord], searches: list[dict[str, Any]], scope: PacketScope
) -> list[dict[str, Any]]:
    """An investigative lead report (reports/lead_report.py) for every released lead of the case's searches."""
    from facetrail.reports.lead_report import collect_lead

    out = []
    for record, entry in zip(records, searches, strict=True):
        for c in entry["candidates"]:
            if c["released"] and c["face_id"] is not None:
                out.append(collect_lead(ctx, s, record, int(c["face_id"]), include_images=scope.include_probe_images))
    return out


def _examining(s: Session, viewer: str, search_ids: list[int], *, complete: bool = False) -> set[int]:
    """The searches the viewer is examining (a task of theirs not complete), or with ``complete`` examined."""
    from facetrail.examination.models import ExaminationTask

    done = ExaminationTask.completed_at.is_not(None) if complete else ExaminationTask.completed_at.is_(None)
    return {
        int(i or 0)
        for i in s.execute(
            select(ExaminationTask.search_id)
            .join(User, User.id == ExaminationTask.reviewer_id)
            .where(User.username == viewer, ExaminationTask.search_id.in_(search_ids), done)
        ).scalars()
    }


def _name_no_other_examiner(entry: dict[str, Any], viewer: str) -> None:
    """Blind verification: an examiner's packet never names the other examiner of a search they examined."""
    from facetrail.governance.release import ANOTHER_REVIEWER

    for c in entry["candidates"]:
        c["decisions"] = [
            d if d.get("reviewer") == viewer else {**d, "reviewer": ANOTHER_REVIEWER, "reviewer_name": ""}
            for d in c["decisions"]
        ]
    entry["review_history"] = [
        h if h.get("reviewer") == f"user:{viewer}" else {**h, "reviewer": ANOTHER_REVIEWER}
        for h in entry["review_history"]
    ]


def _withhold_for_examiner(entry: dict[str, Any]) -> None:
    """Sequential unmasking (docs/examination.md): an examiner whose task is open learns from a packet neither
    the case story nor anything about the candidates: no ranks, scores or conclusions."""
    for key in ("offense", "justification"):
        entry[key] = WITHHELD_FROM_EXAMINER
    entry["candidates"] = []
    entry["review_history"] = []
    entry["outcome"] = "under examination: " + WITHHELD_FROM_EXAMINER
    # the probe's hash and face would link the search to the examiner's task (and tell a known-answer test)
    entry["probe"] = {
        **entry["probe"],
        "sha256": WITHHELD_FROM_EXAMINER,
        "image_kept": False,
        "thumbnail_jpeg_base64": None,
        "thumbnail_note": WITHHELD_FROM_EXAMINER,
    }


def _withhold_undecided(entry: dict[str, Any], viewer: str) -> None:
    """Blind review: hide others' decisions on candidates the viewer has not decided while the review is open."""
    searcher = entry["run_by"].get("username")
    withheld: set[int] = set()
    for c in entry["candidates"]:
        deciders = {d["reviewer"] for d in c["decisions"] if d["reviewer"] != searcher}
        if viewer not in deciders and len(deciders) < RELEASE_REVIEWERS and deciders:
            withheld.add(c["rank"])
            c["decisions"] = []
            c["possible_lead_votes"] = None
            c["decisions_withheld"] = "withheld until you decide (blind two-person review)"
    entry["review_history"] = [
        h for h in entry["review_history"] if h["rank"] not in withheld or h["reviewer"] == f"user:{viewer}"
    ]
    if withheld:
        entry["outcome"] = "under two-person review: " + entry["outcome"]


def _add_probe_thumbnail(ctx: AppContext, entry: dict[str, Any]) -> None:
    """The searched face of a kept probe image, aligned as the model saw it (JPEG, base64), or why not."""
    probe = entry["probe"]
    if not probe["image_kept"]:
        return
    from facetrail.cases.probe import encode_jpeg
    from facetrail.faces.pipeline import PIPELINE_LOCK
    from facetrail.gallery.service import pipeline_for

    data = probe_store(ctx).get(probe["sha256"])
    if data is None:
        probe["thumbnail_note"] = "probe image no longer in the store (removed under its retention rule)"
        return
    try:
        pipeline = pipeline_for(ctx.settings)
        with PIPELINE_LOCK:
            image = pipeline.decode(data)
            faces = pipeline.detect(image)
            face = faces[probe["face_index"]] if 0 <= probe["face_index"] < len(faces) else None
            crop = pipeline.embedder.aligned_crop(image.pixels, face) if face is not None else None
    except FaceTrailError as exc:
        probe["thumbnail_note"] = f"probe face could not be re-extracted: {exc.message}"
        return
    if crop is None:
        probe["thumbnail_note"] = "probe face could not be re-extracted (detector found fewer faces)"
        return
    probe["thumbnail_jpeg_base64"] = base64.b64encode(encode_jpeg(crop)).decode("ascii")
    probe["thumbnail_note"] = "aligned face re-extracted from the kept probe image"
