"""The examination method for a search's candidates (docs/examination.md): ACE-V with sequential unmasking,
the FISWG checklist, the conclusion scale, blind verification and known-answer tests.

Guarantees (each refusal goes through the one gate, audit/refusals.py):
- Assignment: the SYSTEM assigns each search's two examiners at random among the eligible reviewers of the
  searcher's unit (role reviewer, not disabled, never the searcher; the adjudicators the policy names only when
  nobody else is eligible). Nobody chooses a verifier; no reviewer is ever told who the other one is.
- A reviewer reaches only their own tasks, by an opaque task id; another reviewer's task, a task of another
  unit and a task that does not exist all answer the same "not found".
- Sequential unmasking: first the probe alone; the probe analysis (quality factors, suitable or not) is
  recorded once and locked. "Not suitable" ends the task (every candidate is concluded not_suitable). Only then
  are candidates listed: in a random order, by opaque handles, with their images and nothing else. Score, rank,
  estimated FMR and the subject's identifier appear for a candidate only in the reveal that follows this
  reviewer's conclusion on it; the other reviewer's conclusion and the case story (offense, justification, case
  number) only once the whole task is complete.
- The order in which candidates were opened is recorded (``seen_order``), with each step audited.
- A conclusion (examination.scale) needs the reasoning and the limitations, and, except "not suitable", a
  complete FISWG checklist whose dissimilarities are explained; it is recorded once and is final. For a live
  search it is the reviewer's entry in the release ledger (candidate_reviews); governance.release applies the
  policy's release rule to it (two independent conclusions at or above ``examination.release_level``).
- Known-answer tests: built from the agency's own gallery (a probe face and candidates, mated or not), mixed
  into queues at ``examination.known_answer_rate``; at the API they have the same shapes, fields and id space as
  live tasks until the task is complete. Each reviewer's record on them, by conclusion level, is shown to the
  reviewer and to those with proficiency.view_all.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import func, select

from facetrail.accounts import mfa
from facetrail.audit.log import append_audit
from facetrail.audit.refusals import refuse
from facetrail.cases.searches import deny, shown_candidates
from facetrail.cluster import held_probes
from facetrail.context import AppContext
from facetrail.errors import BadInputError, FaceTrailError, NotFoundError
from facetrail.examination import fiswg
from facetrail.examination.models import ExaminationTask, ExaminedCandidate, KnownAnswerTest, ProbeAnalysisRecord
from facetrail.examination.scale import LABELS, Conclusion, parse, side, strength, supports_same_source
from facetrail.faces.calibration import load_calibration
from facetrail.gallery.search import probe_store
from facetrail.gallery.service import image_store
from facetrail.governance import approvals, release
from facetrail.governance.policy import active_policy, policy_of_version
from facetrail.policy.principal import Principal
from facetrail.policy.roles import Permission, Role
from facetrail.storage.models import CandidateReview, Face, SearchRecord, Subject, User, utcnow
from facetrail.text import check_text

_random = secrets.SystemRandom()
MAX_TEXT = 5000
EXAMINERS = release.RELEASE_REVIEWERS
KAT_SAMPLE = 2000  # gallery faces scored to pick a known-answer test's close non-mated candidates
WITHHELD = "withheld until your examination of this search is complete"


class ExaminationNotFoundError(NotFoundError):
    code = "examination_not_found"


class ImageNotRetainedError(NotFoundError):
    code = "image_not_retained"


class ProbeAnalysisRequiredError(FaceTrailError):
    """Sequential unmasking: no candidate before the probe analysis is recorded."""

    code = "probe_analysis_required"
    http_status = 409


class ProbeAnalysisLockedError(FaceTrailError):
    code = "probe_analysis_locked"
    http_status = 409


class ProbeNotSuitableError(FaceTrailError):
    code = "probe_not_suitable"
    http_status = 409


class ConclusionFinalError(FaceTrailError):
    code = "conclusion_final"
    http_status = 409


class ExaminationLockedError(FaceTrailError):
    code = "examination_locked"
    http_status = 409


class ChecklistIncompleteError(BadInputError):
    code = "checklist_incomplete"


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    return value if value is None or value.tzinfo else value.replace(tzinfo=dt.UTC)


def _require_reviewer(ctx: AppContext, who: Principal, action: str, target: str) -> None:
    if not who.can(Permission.REVIEW_DECIDE) or who.user_id is None:
        raise deny(ctx, who, action, target, f"role '{who.role}' does not examine candidates")


# ------------------------------------------------------------------ assignment


def _eligible(ctx: AppContext, record: SearchRecord, taken: set[int]) -> list[int]:
    """Reviewers who may examine ``record``: its unit's active reviewers, never the searcher, not yet assigned;
    the policy's named adjudicators (they settle disagreements) and whoever decided the search's approval (they
    read its case story) only when nobody else is free."""
    from facetrail.governance.models import SearchApproval

    adjudicators = set(active_policy(ctx).review.adjudicators)
    with ctx.db.read() as s:
        approvers = {
            int(i)
            for i in s.execute(
                select(SearchApproval.decided_by_id).where(
                    SearchApproval.search_id == record.id, SearchApproval.decided_by_id.is_not(None)
                )
            ).scalars()
            if i is not None
        }
        rows = s.execute(
            select(User.id, User.username).where(
                User.role == Role.REVIEWER.value,
                User.unit_id == record.unit_id,
                User.disabled.is_(False),
            )
        ).all()
    pool = [(int(i), name) for i, name in rows if int(i) != record.user_id and int(i) not in taken]
    plain = [i for i, name in pool if name not in adjudicators and i not in approvers]
    return plain if len(plain) >= EXAMINERS - len(taken) else [i for i, _ in pool]


def _new_task(s: Any, reviewer_id: int, *, search_id: int | None, known_answer_id: int | None) -> ExaminationTask:
    task = ExaminationTask(
        public_id=secrets.token_urlsafe(12),
        reviewer_id=reviewer_id,
        search_id=search_id,
        known_answer_id=known_answer_id,
        assigned_by="system",
    )
    s.add(task)
    s.flush()
    return task


def assign_examiners(ctx: AppContext, record: SearchRecord) -> list[int]:
    """The system assigns the search's open examiner places at random (idempotent); the ids assigned now."""
    if record.unit_id is None or not shown_candidates(ctx, record):
        return []
    with ctx.db.read() as s:
        taken = {
            int(r)
            for r in s.execute(select(ExaminationTask.reviewer_id).where(ExaminationTask.search_id == record.id))
            .scalars()
            .all()
        }
    missing = EXAMINERS - len(taken)
    if missing <= 0:
        return []
    pool = _eligible(ctx, record, taken)
    chosen = _random.sample(pool, min(missing, len(pool)))
    rate = active_policy(ctx).examination.known_answer_rate
    assigned = []
    for reviewer_id in chosen:
        with ctx.db.transaction() as s:
            # Two assigners at once (two queue calls, PostgreSQL) would each count the places free before either
            # inserted, and open a third task: the search's row lock makes the count and the insert one step.
            s.execute(select(SearchRecord.id).where(SearchRecord.id == record.id).with_for_update())
            exists = s.execute(
                select(ExaminationTask.id).where(
                    ExaminationTask.search_id == record.id, ExaminationTask.reviewer_id == reviewer_id
                )
            ).first()
            count = s.execute(
                select(func.count()).select_from(ExaminationTask).where(ExaminationTask.search_id == record.id)
            ).scalar_one()
            if exists or count >= EXAMINERS:
                continue
            task = _new_task(s, reviewer_id, search_id=record.id, known_answer_id=None)
            append_audit(
                s,
                actor="system",
                action="examination.assign",
                target=f"search:{record.id}",
                details={"search_id": record.id, "reviewer_id": reviewer_id, "task": task.public_id},
            )
            assigned.append(reviewer_id)
        if rate > 0 and _random.random() < rate:
            mix_known_answer_test(ctx, reviewer_id, record)
    return assigned


def _open_searches(ctx: AppContext, unit_id: int) -> list[SearchRecord]:
    """The unit's searches that still lack examiners."""
    with ctx.db.read() as s:
        counts = (
            select(ExaminationTask.search_id, func.count().label("n"))
            .where(ExaminationTask.search_id.is_not(None))
            .group_by(ExaminationTask.search_id)
            .subquery()
        )
        rows = (
            s.execute(
                select(SearchRecord)
                .outerjoin(counts, counts.c.search_id == SearchRecord.id)
                .where(SearchRecord.unit_id == unit_id, func.coalesce(counts.c.n, 0) < EXAMINERS)
                .order_by(SearchRecord.id)
            )
            .scalars()
            .all()
        )
        for r in rows:
            s.expunge(r)
        return list(rows)


def assign_pending(ctx: AppContext, unit_id: int | None) -> None:
    """Fill every open examiner place of the unit's searches (called whenever a reviewer asks for work)."""
    if unit_id is None:
        return
    for record in _open_searches(ctx, unit_id):
        assign_examiners(ctx, record)


# ------------------------------------------------------------------ known-answer tests


def _face_vector(face: Face) -> np.ndarray:
    return np.frombuffer(face.embedding, dtype="<f4")


def build_known_answer_test(ctx: AppContext, gallery_id: int, size: int) -> int | None:
    """A known-answer test from the gallery: a probe face of a subject with at least two faces, and ``size``
    candidates ranked by similarity like a search's: with probability 1/2 one mate (another face of the same
    subject), the rest the closest non-mated faces of a random sample. None when the gallery cannot supply one."""
    with ctx.db.read() as s:
        multi = (
            s.execute(
                select(Face.subject_id)
                .where(Face.gallery_id == gallery_id)
                .group_by(Face.subject_id)
                .having(func.count() >= 2)
            )
            .scalars()
            .all()
        )
        if not multi:
            return None
        subject_id = _random.choice(list(multi))
        own = s.execute(select(Face).where(Face.subject_id == subject_id)).scalars().all()
        probe, mate = _random.sample(list(own), 2)
        model_id = probe.model_id
        pool_ids = (
            s.execute(select(Face.id).where(Face.gallery_id == gallery_id, Face.subject_id != subject_id))
            .scalars()
            .all()
        )
        sample = _random.sample(list(pool_ids), min(KAT_SAMPLE, len(pool_ids)))
        others = s.execute(select(Face).where(Face.id.in_(sample))).scalars().all() if sample else []
        vector = _face_vector(probe)
        scored = sorted(((float(np.dot(vector, _face_vector(f))), f) for f in others), key=lambda t: -t[0])
        # one candidate per subject (its best face), as a search lists them: two candidates showing the same
        # person's photos would tell the test apart
        best: dict[int, tuple[float, Face]] = {}
        for score, f in scored:
            best.setdefault(int(f.subject_id), (score, f))
        scored = sorted(best.values(), key=lambda t: -t[0])
        mated = _random.random() < 0.5
        chosen = scored[: max(1, size) - (1 if mated else 0)]
        if mated:
            chosen.append((float(np.dot(vector, _face_vector(mate))), mate))
        if not chosen:
            return None
        chosen.sort(key=lambda t: -t[0])
        externals = {
            int(i): str(e)
            for i, e in s.execute(
                select(Subject.id, Subject.external_id).where(Subject.id.in_({f.subject_id for _, f in chosen}))
            ).all()
        }
        probe_face_id = probe.id
        cal = load_calibration(model_id)
        candidates = [
            {
                "rank": rank,
                "face_id": f.id,
                "subject_id": f.subject_id,
                "subject_external_id": externals.get(f.subject_id, ""),
                "similarity": round(score, 5),
                "fmr": cal.fmr_at(score),
                "mated": f.subject_id == subject_id,
            }
            for rank, (score, f) in enumerate(chosen, start=1)
        ]
    with ctx.db.transaction() as s:
        kat = KnownAnswerTest(gallery_id=gallery_id, probe_face_id=probe_face_id, candidates=candidates)
        s.add(kat)
        s.flush()
        append_audit(
            s,
            actor="system",
            action="examination.known_answer",
            target=f"known_answer:{kat.id}",
            details={"gallery_id": gallery_id, "candidates": len(candidates), "mated": mated},
        )
        return kat.id


def mix_known_answer_test(ctx: AppContext, reviewer_id: int, like: SearchRecord) -> str | None:
    """Give ``reviewer_id`` a known-answer test shaped like ``like`` (same gallery, same number of candidates)."""
    if like.gallery_id is None:
        return None
    kat_id = build_known_answer_test(ctx, like.gallery_id, len(shown_candidates(ctx, like)))
    if kat_id is None:
        return None
    with ctx.db.transaction() as s:
        task = _new_task(s, reviewer_id, search_id=None, known_answer_id=kat_id)
        append_audit(
            s,
            actor="system",
            action="examination.assign",
            target=f"known_answer:{kat_id}",
            details={"known_answer_id": kat_id, "reviewer_id": reviewer_id, "task": task.public_id},
        )
        return task.public_id


# ------------------------------------------------------------------ loading a task


@dataclass(frozen=True)
class _Task:
    id: int
    public_id: str
    reviewer_id: int
    search: SearchRecord | None
    known_answer: KnownAnswerTest | None
    completed_at: dt.datetime | None
    assigned_at: dt.datetime | None = None

    @property
    def candidates_source(self) -> list[dict[str, Any]]:
        return list(self.known_answer.candidates) if self.known_answer else []


def _load(ctx: AppContext, who: Principal, public_id: str, action: str) -> _Task:
    """The caller's own task, else "not found" (audited) — the same for someone else's task as for none."""
    target = f"examination:{public_id[:40]}"
    _require_reviewer(ctx, who, action, target)
    with ctx.db.read() as s:
        task = s.execute(
            select(ExaminationTask).where(
                ExaminationTask.public_id == public_id, ExaminationTask.reviewer_id == who.user_id
            )
        ).scalar_one_or_none()
        search = s.get(SearchRecord, task.search_id) if task and task.search_id is not None else None
        kat = s.get(KnownAnswerTest, task.known_answer_id) if task and task.known_answer_id is not None else None
        for obj in (task, search, kat):
            if obj is not None:
                s.expunge(obj)
    live_ok = search is not None and search.unit_id == who.unit_id and search.user_id != who.user_id
    if task is None or not (live_ok or kat is not None):
        raise refuse(
            ctx,
            who,
            action,
            target,
            ExaminationNotFoundError("no such examination task of yours"),
            outcome="not_found",
        )
    if search is not None and approvals.results_locked(ctx, search.id):
        raise refuse(
            ctx,
            who,
            action,
            target,
            ExaminationLockedError("this examination is locked (an emergency search not approved in time)"),
        )
    return _Task(
        task.id, task.public_id, task.reviewer_id, search, kat, _aware(task.completed_at), _aware(task.assigned_at)
    )


def _source(ctx: AppContext, task: _Task) -> list[dict[str, Any]]:
    """The task's candidates as the search (or test) listed them: rank, face_id, similarity, fmr, subject."""
    if task.search is not None:
        return shown_candidates(ctx, task.search)
    return task.candidates_source


def _rows(ctx: AppContext, task: _Task) -> list[ExaminedCandidate]:
    with ctx.db.read() as s:
        rows = (
            s.execute(
                select(ExaminedCandidate)
                .where(ExaminedCandidate.task_id == task.id)
                .order_by(ExaminedCandidate.position)
            )
            .scalars()
            .all()
        )
        for r in rows:
            s.expunge(r)
        return list(rows)


def _analysis(ctx: AppContext, task_id: int) -> ProbeAnalysisRecord | None:
    with ctx.db.read() as s:
        row = s.execute(select(ProbeAnalysisRecord).where(ProbeAnalysisRecord.task_id == task_id)).scalar_one_or_none()
        if row is not None:
            s.expunge(row)
        return row


def _audit(ctx: AppContext, who: Principal, action: str, task: _Task, **details: Any) -> None:
    with ctx.db.transaction() as s:
        append_audit(
            s,
            actor=who.actor,
            action=action,
            target=f"examination:{task.public_id}",
            details={"task": task.public_id, **details, **who.audit_context()},
        )


# ------------------------------------------------------------------ views


def _analysis_dict(row: ProbeAnalysisRecord | None) -> dict[str, Any] | None:
    if row is None:
        return None
    return {
        "quality": row.quality,
        "suitable": row.suitable,
        "notes": row.notes,
        "recorded_at": _aware(row.recorded_at),
        "locked": True,
    }


def _status(task: _Task, analysis: ProbeAnalysisRecord | None) -> str:
    if task.completed_at is not None:
        return "complete"
    return "comparison" if analysis is not None else "probe_analysis"


def _case(task: _Task) -> dict[str, Any] | None:
    """What a complete task reveals about where it came from: the case story, or the known answers."""
    if task.completed_at is None:
        return None
    if task.search is not None:
        s = task.search
        return {
            "known_answer_test": False,
            "case_number": s.case_number,
            "offense": s.offense,
            "justification": s.reason,
        }
    return {"known_answer_test": True, "case_number": None, "offense": None, "justification": None}


def _other_conclusion(ctx: AppContext, task: _Task, face_id: int) -> dict[str, Any]:
    """The other examiner's conclusion on the candidate (never who they are). Called only once this reviewer's
    whole task is complete: before that, whether the other examiner has concluded would tell a live task (it can
    have) from a known-answer test (which has no other examiner); once complete, the task says what it was."""
    if task.search is None:
        return {"status": "none", "conclusion": None}  # a known-answer test has no other examiner
    with ctx.db.read() as s:
        rows = s.execute(
            select(CandidateReview.reviewer_id, CandidateReview.decision).where(
                CandidateReview.search_id == task.search.id, CandidateReview.face_id == face_id
            )
        ).all()
    others = [d for r, d in rows if int(r) != task.reviewer_id]
    if not others:
        return {"status": "pending", "conclusion": None}
    return {"status": "concluded", "conclusion": others[0]}


def _reveal(ctx: AppContext, task: _Task, row: ExaminedCandidate) -> dict[str, Any] | None:
    """Score, rank, estimated FMR and identity: only after this reviewer concluded on the candidate. The other
    examiner's conclusion: only once this reviewer's whole task is complete; before that the reveal has no field
    about the other examiner at all (a live task's and a known-answer test's reveals have the same shape)."""
    if row.conclusion is None:
        return None
    match = next((c for c in _source(ctx, task) if int(c["face_id"]) == row.face_id), None)
    known = None
    if task.known_answer is not None and task.completed_at is not None and match is not None:
        known = "mated" if match.get("mated") else "non_mated"
    out: dict[str, Any] = {
        "rank": row.rank,
        "similarity": float(match["similarity"]) if match else None,
        "estimated_fmr": float(match["fmr"]) if match else None,
        "subject_external_id": str(match["subject_external_id"]) if match else None,
        "known_answer": known,
    }
    if task.completed_at is not None:
        out["other_conclusion"] = _other_conclusion(ctx, task, row.face_id)
    return out


def _candidate_dict(ctx: AppContext, task: _Task, row: ExaminedCandidate, *, detail: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "handle": row.handle,
        "position": row.position,
        "image_url": f"/api/v1/examinations/{task.public_id}/candidates/{row.handle}/photos/0",
        "photos": _photos(ctx, task, row.face_id) if detail else None,
        "seen_order": row.seen_order,
        "conclusion": row.conclusion,
        "concluded_at": _aware(row.concluded_at),
        "reveal": _reveal(ctx, task, row),
    }
    if detail:
        out["checklist"] = {
            "marks": row.marks,
            "annotations": row.annotations,
            "measurements": row.measurements,
            "saved_at": _aware(row.checklist_saved_at),
            "unmarked": fiswg.unmarked(row.marks),
        }
        out["reasoning"] = row.reasoning
        out["limitations"] = row.limitations
    return out


def task_dict(ctx: AppContext, task: _Task) -> dict[str, Any]:
    analysis = _analysis(ctx, task.id)
    rows = _rows(ctx, task) if analysis is not None else []
    return {
        "task_id": task.public_id,
        "status": _status(task, analysis),
        "probe_image_url": f"/api/v1/examinations/{task.public_id}/probe/image",
        "probe_analysis": _analysis_dict(analysis),
        "candidates_total": len(rows) if analysis is not None else None,
        "candidates_concluded": sum(1 for r in rows if r.conclusion is not None),
        "case": _case(task),
        "probe_declaration": _declaration(task) if analysis is not None else None,
    }


def _declaration(task: _Task) -> str:
    """What the searcher declared the probe to be (exam-evidence, issue 15): shown once the probe analysis is
    recorded, so that it does not colour the analysis; a known-answer test's probe is an enrolled photo."""
    return task.search.probe_declaration if task.search is not None else "original"


def queue(ctx: AppContext, who: Principal) -> list[dict[str, Any]]:
    """The caller's examination tasks (live and known-answer alike), in a random-looking but stable order."""
    _require_reviewer(ctx, who, "examination.queue", "examinations")
    assign_pending(ctx, who.unit_id)
    with ctx.db.read() as s:
        ids = (
            s.execute(
                select(ExaminationTask.public_id)
                .where(ExaminationTask.reviewer_id == who.user_id)
                .order_by(ExaminationTask.public_id)
            )
            .scalars()
            .all()
        )
    out = []
    for public_id in ids:
        try:
            task = _load_quiet(ctx, who, public_id)
        except FaceTrailError:
            continue  # e.g. a search locked pending approval, or the reviewer moved unit
        if task is not None:
            out.append(task_dict(ctx, task))
    return out


def _load_quiet(ctx: AppContext, who: Principal, public_id: str) -> _Task | None:
    """Like _load, for listing the caller's own queue (no audit record per entry)."""
    with ctx.db.read() as s:
        task = s.execute(
            select(ExaminationTask).where(
                ExaminationTask.public_id == public_id, ExaminationTask.reviewer_id == who.user_id
            )
        ).scalar_one_or_none()
        if task is None:
            return None
        search = s.get(SearchRecord, task.search_id) if task.search_id is not None else None
        kat = s.get(KnownAnswerTest, task.known_answer_id) if task.known_answer_id is not None else None
        for obj in (task, search, kat):
            if obj is not None:
                s.expunge(obj)
    if search is not None:
        if search.unit_id != who.unit_id or search.user_id == who.user_id:
            return None
        if approvals.results_locked(ctx, search.id):
            return None
    elif kat is None:
        return None
    return _Task(
        task.id, task.public_id, task.reviewer_id, search, kat, _aware(task.completed_at), _aware(task.assigned_at)
    )


def get_task(ctx: AppContext, who: Principal, public_id: str) -> dict[str, Any]:
    task = _load(ctx, who, public_id, "examination.view")
    out = task_dict(ctx, task)
    _audit(ctx, who, "examination.view", task, status=out["status"])
    return out


# ------------------------------------------------------------------ images


def probe_image(ctx: AppContext, who: Principal, public_id: str) -> bytes:
    """The probe at full available resolution: the stored original, else the searched face still held."""
    task = _load(ctx, who, public_id, "examination.image")
    data: bytes | None = None
    if task.search is not None:
        if task.search.probe_stored:
            data = probe_store(ctx).get(task.search.probe_sha256)
        if data is None:
            data = held_probes.searched_face(ctx, task.search.id)
    elif task.known_answer is not None:
        data = known_answer_probe(ctx, task)
    if data is None:
        raise refuse(
            ctx,
            who,
            "examination.image",
            f"examination:{task.public_id}",
            ImageNotRetainedError("the probe image is not retained (the policy keeps only its hash)"),
            outcome="not_found",
        )
    _audit(ctx, who, "examination.image", task, image="probe")
    return data


def known_answer_probe(ctx: AppContext, task: Any) -> bytes | None:
    """A known-answer test's probe served as a live task's probe would be (else the test tells itself apart):
    the enrolled original where the agency keeps probe images; otherwise only the aligned face (the gallery's
    thumbnail, the form of the searched face held after a search), and only as long as a searched face is held
    (cluster.held_probes.FACES_SECONDS from the assignment), then not retained."""
    face_id = int(task.known_answer.probe_face_id)
    if ctx.settings.keep_probe_images:
        return _face_image(ctx, face_id)
    assigned = _aware(task.assigned_at) or utcnow()
    if utcnow() - assigned > dt.timedelta(seconds=held_probes.FACES_SECONDS):
        return None
    with ctx.db.read() as s:
        face = s.get(Face, face_id)
        return bytes(face.thumbnail) if face is not None else None


def _face_image(ctx: AppContext, face_id: int) -> bytes | None:
    with ctx.db.read() as s:
        face = s.get(Face, face_id)
        if face is None:
            return None
        sha, stored, thumb = face.image_sha256, face.image_stored, bytes(face.thumbnail)
    if stored:
        original = image_store(ctx).get(sha)
        if original is not None:
            return original
    return thumb


def _subject_faces(ctx: AppContext, face_id: int, *, probe_face_id: int | None = None) -> list[Face]:
    """All the enrolled photos of the candidate's subject: the candidate's own first, then by capture date.
    ``probe_face_id`` (a known-answer test's probe, an enrolled photo) is never among them: the mate's photos
    would otherwise include the probe itself, byte for byte, telling both the test and its answer."""
    with ctx.db.read() as s:
        face = s.get(Face, face_id)
        if face is None:
            return []
        faces = (
            s.execute(select(Face).where(Face.subject_id == face.subject_id, Face.id != (probe_face_id or -1)))
            .scalars()
            .all()
        )
        for f in faces:
            s.expunge(f)
    rest = sorted((f for f in faces if f.id != face_id), key=lambda f: (f.capture_date or dt.date.min, f.id))
    return [f for f in faces if f.id == face_id] + rest


def probe_face_of(task: Any) -> int | None:
    """The enrolled face a known-answer test uses as its probe (None for a live search)."""
    return int(task.known_answer.probe_face_id) if task.known_answer is not None else None


def _photos(ctx: AppContext, task: _Task, face_id: int) -> list[dict[str, Any]]:
    return [
        {"index": i, "capture_date": f.capture_date.isoformat() if f.capture_date else None}
        for i, f in enumerate(_subject_faces(ctx, face_id, probe_face_id=probe_face_of(task)))
    ]


def _row(ctx: AppContext, who: Principal, task: _Task, handle: str, action: str) -> ExaminedCandidate:
    for row in _rows(ctx, task):
        if row.handle == handle:
            return row
    raise refuse(
        ctx,
        who,
        action,
        f"examination:{task.public_id}",
        ExaminationNotFoundError("no such candidate in this examination"),
        outcome="not_found",
    )


def _require_comparison(ctx: AppContext, who: Principal, task: _Task, action: str) -> ProbeAnalysisRecord:
    analysis = _analysis(ctx, task.id)
    if analysis is None:
        raise refuse(
            ctx,
            who,
            action,
            f"examination:{task.public_id}",
            ProbeAnalysisRequiredError("analyse the probe alone first: candidates are shown once it is recorded"),
        )
    return analysis


def candidate_photo(ctx: AppContext, who: Principal, public_id: str, handle: str, index: int) -> bytes:
    task = _load(ctx, who, public_id, "examination.image")
    _require_comparison(ctx, who, task, "examination.image")
    row = _row(ctx, who, task, handle, "examination.image")
    faces = _subject_faces(ctx, row.face_id, probe_face_id=probe_face_of(task))
    data = _face_image(ctx, faces[index].id) if 0 <= index < len(faces) else None
    if data is None:
        raise refuse(
            ctx,
            who,
            "examination.image",
            f"examination:{task.public_id}",
            ImageNotRetainedError("no such photo of this candidate"),
            outcome="not_found",
        )
    _audit(ctx, who, "examination.image", task, image="candidate", handle=handle, photo=index)
    return data


# ------------------------------------------------------------------ probe analysis (locks)


def record_probe_analysis(
    ctx: AppContext, who: Principal, public_id: str, quality: Any, suitable: bool, notes: str
) -> dict[str, Any]:
    """Record the analysis of the probe alone, once. Suitable: the candidates are drawn up (shuffled, opaque
    handles). Not suitable: the task ends with that finding (every candidate concluded not_suitable)."""
    action = "examination.probe_analysis"
    task = _load(ctx, who, public_id, action)
    target = f"examination:{task.public_id}"
    try:
        cleaned = fiswg.clean_quality(quality)
        text = check_text("notes", notes, max_len=MAX_TEXT, required=not suitable, multiline=True)
    except fiswg.ChecklistError as exc:
        raise refuse(ctx, who, action, target, BadInputError(str(exc), field=exc.field)) from None
    except BadInputError as exc:
        raise refuse(ctx, who, action, target, exc) from None
    if _analysis(ctx, task.id) is not None:
        raise refuse(
            ctx,
            who,
            action,
            target,
            ProbeAnalysisLockedError("the probe analysis is recorded and locked: it cannot be changed"),
        )
    source = _source(ctx, task)
    order = list(range(len(source)))
    _random.shuffle(order)
    with ctx.db.transaction() as s:
        if s.execute(select(ProbeAnalysisRecord.id).where(ProbeAnalysisRecord.task_id == task.id)).first():
            raise ProbeAnalysisLockedError("the probe analysis is recorded and locked: it cannot be changed")
        s.add(ProbeAnalysisRecord(task_id=task.id, quality=cleaned, suitable=suitable, notes=text))
        for position, i in enumerate(order, start=1):
            c = source[i]
            s.add(
                ExaminedCandidate(
                    task_id=task.id,
                    handle=secrets.token_urlsafe(9),
                    face_id=int(c["face_id"]),
                    rank=int(c["rank"]),
                    position=position,
                    marks={},
                    annotations=[],
                    measurements=[],
                    reasoning="",
                    limitations="",
                )
            )
        append_audit(
            s,
            actor=who.actor,
            action=action,
            target=target,
            details={"task": task.public_id, "suitable": suitable, **who.audit_context()},
        )
    if not suitable:
        reason = "probe not suitable for comparison: " + text
        for row in _rows(ctx, task):
            _conclude(ctx, who, task, row, Conclusion.NOT_SUITABLE, reason, text)
    return get_task_quiet(ctx, who, public_id)


def get_task_quiet(ctx: AppContext, who: Principal, public_id: str) -> dict[str, Any]:
    task = _load_quiet(ctx, who, public_id)
    if task is None:
        raise ExaminationNotFoundError("no such examination task of yours")
    return task_dict(ctx, task)


# ------------------------------------------------------------------ candidates (masked until concluded)


def list_candidates(ctx: AppContext, who: Principal, public_id: str) -> list[dict[str, Any]]:
    task = _load(ctx, who, public_id, "examination.candidates")
    _require_comparison(ctx, who, task, "examination.candidates")
    rows = _rows(ctx, task)
    _audit(ctx, who, "examination.candidates", task, candidates=len(rows))
    return [_candidate_dict(ctx, task, r, detail=False) for r in rows]


def open_candidate(ctx: AppContext, who: Principal, public_id: str, handle: str) -> dict[str, Any]:
    """One candidate with its photos and the caller's checklist; the first opening records its place in the
    order of what was seen."""
    action = "examination.open"
    task = _load(ctx, who, public_id, action)
    _require_comparison(ctx, who, task, action)
    row = _row(ctx, who, task, handle, action)
    if row.seen_order is None:
        with ctx.db.transaction() as s:
            live = s.get(ExaminedCandidate, row.id)
            assert live is not None
            if live.seen_order is None:
                seen = s.execute(
                    select(func.max(ExaminedCandidate.seen_order)).where(ExaminedCandidate.task_id == task.id)
                ).scalar_one()
                live.seen_order, live.seen_at = int(seen or 0) + 1, utcnow()
                append_audit(
                    s,
                    actor=who.actor,
                    action=action,
                    target=f"examination:{task.public_id}",
                    details={"task": task.public_id, "handle": handle, "seen_order": live.seen_order},
                )
        row = _row(ctx, who, task, handle, action)
    return _candidate_dict(ctx, task, row, detail=True)


def save_checklist(
    ctx: AppContext,
    who: Principal,
    public_id: str,
    handle: str,
    marks: Any,
    annotations: Any = None,
    measurements: Any = None,
) -> dict[str, Any]:
    """Save the FISWG checklist of one candidate (as often as needed) until the conclusion is recorded."""
    action = "examination.checklist"
    task = _load(ctx, who, public_id, action)
    _require_comparison(ctx, who, task, action)
    row = _row(ctx, who, task, handle, action)
    target = f"examination:{task.public_id}"
    try:
        clean = (
            fiswg.clean_marks(marks),
            fiswg.clean_annotations(annotations),
            fiswg.clean_measurements(measurements),
        )
    except fiswg.ChecklistError as exc:
        raise refuse(ctx, who, action, target, BadInputError(str(exc), field=exc.field)) from None
    except BadInputError as exc:
        raise refuse(ctx, who, action, target, exc) from None
    if row.conclusion is not None:
        raise refuse(
            ctx, who, action, target, ConclusionFinalError("the conclusion is recorded: its checklist is final")
        )
    if row.seen_order is None:
        open_candidate(ctx, who, public_id, handle)
    with ctx.db.transaction() as s:
        live = s.get(ExaminedCandidate, row.id)
        assert live is not None
        if live.conclusion is not None:
            raise ConclusionFinalError("the conclusion is recorded: the checklist behind it is final")
        live.marks, live.annotations, live.measurements = clean
        live.checklist_saved_at = utcnow()
        append_audit(
            s,
            actor=who.actor,
            action=action,
            target=target,
            details={
                "task": task.public_id,
                "handle": handle,
                "marked": sum(len(v) for v in clean[0].values()),
                "dissimilar": sum(1 for v in clean[0].values() for e in v.values() if e["mark"] == "dissimilar"),
                "annotations": len(clean[1]),
                "measurements": len(clean[2]),
                **who.audit_context(),
            },
        )
    return open_candidate(ctx, who, public_id, handle)


def record_conclusion(
    ctx: AppContext, who: Principal, public_id: str, handle: str, conclusion: str, reasoning: str, limitations: str
) -> dict[str, Any]:
    """Record the caller's conclusion on one candidate, once; the answer reveals what was withheld."""
    action = "examination.conclude"
    task = _load(ctx, who, public_id, action)
    _require_comparison(ctx, who, task, action)
    row = _row(ctx, who, task, handle, action)
    target = f"examination:{task.public_id}"
    choice = parse(conclusion)
    try:
        if choice is None:
            raise BadInputError(
                f"conclusion must be one of {', '.join(c.value for c in Conclusion)}", field="conclusion"
            )
        why = check_text("reasoning", reasoning, max_len=MAX_TEXT, multiline=True)
        limits = check_text("limitations", limitations, max_len=MAX_TEXT, multiline=True)
        if row.seen_order is None:
            raise BadInputError("open the candidate and compare it before concluding", field="handle")
        if choice is not Conclusion.NOT_SUITABLE:
            missing = fiswg.unmarked(row.marks)
            if missing:
                raise ChecklistIncompleteError(
                    f"mark every FISWG characteristic first ({len(missing)} unmarked, e.g. {missing[0]})",
                    field="checklist",
                )
    except BadInputError as exc:
        raise refuse(ctx, who, action, target, exc) from None
    assert choice is not None
    if row.conclusion is not None:
        raise refuse(
            ctx, who, action, target, ConclusionFinalError("your conclusion on this candidate is recorded and final")
        )
    if task.search is not None:
        level = release_level(ctx, task.search)
        if supports_same_source(choice.value, level):
            # asked for every conclusion that could release (the answer must not tell whether the other agreed)
            mfa.require_fresh_second_factor(ctx, who, "a conclusion that can release a lead")
        release.check_may_decide(ctx, who, task.search, row.face_id, row.rank)
    elif supports_same_source(choice.value, active_policy(ctx).examination.release_level):
        mfa.require_fresh_second_factor(ctx, who, "a conclusion that can release a lead")
    _conclude(ctx, who, task, row, choice, why, limits)
    return open_candidate(ctx, who, public_id, handle)


def release_level(ctx: AppContext, record: SearchRecord) -> str:
    """The release level of the policy the search ran under."""
    return policy_of_version(ctx, record.policy_version).examination.release_level


def _conclude(
    ctx: AppContext, who: Principal, task: _Task, row: ExaminedCandidate, choice: Conclusion, why: str, limits: str
) -> None:
    with ctx.db.transaction() as s:
        live = s.get(ExaminedCandidate, row.id)
        assert live is not None
        if live.conclusion is not None:
            raise ConclusionFinalError("your conclusion on this candidate is recorded and final")
        live.conclusion, live.reasoning, live.limitations, live.concluded_at = choice.value, why, limits, utcnow()
        if task.search is not None:
            existing = s.execute(
                select(CandidateReview).where(
                    CandidateReview.search_id == task.search.id,
                    CandidateReview.face_id == row.face_id,
                    CandidateReview.reviewer_id == who.user_id,
                )
            ).scalar_one_or_none()
            if existing is not None:
                raise ConclusionFinalError("your conclusion on this candidate is recorded and final")
            s.add(
                CandidateReview(
                    search_id=task.search.id,
                    face_id=row.face_id,
                    rank=row.rank,
                    reviewer_id=who.user_id,
                    decision=choice.value,
                    notes=why,
                )
            )
        s.flush()
        left = s.execute(
            select(func.count())
            .select_from(ExaminedCandidate)
            .where(ExaminedCandidate.task_id == task.id, ExaminedCandidate.conclusion.is_(None))
        ).scalar_one()
        if left == 0:
            t = s.get(ExaminationTask, task.id)
            assert t is not None
            t.completed_at = utcnow()
        if task.search is not None:  # the release ledger's record (case packets list it as a review decision)
            append_audit(
                s,
                actor=who.actor,
                action="review.decide",
                target=f"search:{task.search.id}",
                details={
                    "search_id": task.search.id,
                    "case_number": task.search.case_number,
                    "rank": row.rank,  # never the face id: the audit log names no unreleased candidate
                    "decision": choice.value,
                    "previous_decision": None,
                    "notes": why,
                    "limitations": limits,
                    "by_examination": task.public_id,
                    **who.audit_context(),
                },
            )
        append_audit(
            s,
            actor=who.actor,
            action="examination.conclude",
            target=f"examination:{task.public_id}",
            details={
                "task": task.public_id,
                "handle": row.handle,
                "conclusion": choice.value,
                "reasoning": why,
                "limitations": limits,
                "seen_order": live.seen_order,
                "task_complete": left == 0,
                **who.audit_context(),
            },
        )
    if task.search is not None:
        release.after_decision(ctx, who, task.search, row.face_id, row.rank)


# ------------------------------------------------------------------ proficiency (known-answer tests)


def proficiency(ctx: AppContext, who: Principal, username: str | None = None) -> list[dict[str, Any]]:
    """Reviewers' records on known-answer tests by conclusion level: one's own, or (proficiency.view_all)
    anyone's. Only complete known-answer tasks count (an open one would reveal itself)."""
    sees_all = who.can(Permission.PROFICIENCY_VIEW_ALL)
    if not sees_all and not who.can(Permission.REVIEW_DECIDE):
        raise deny(ctx, who, "examination.proficiency", "proficiency", f"role '{who.role}' has no such record")
    if username is not None and username != who.username and not sees_all:
        raise deny(ctx, who, "examination.proficiency", f"user:{username[:100]}", "only one's own record")
    with ctx.db.read() as s:
        query = (
            select(User.username, ExaminedCandidate.face_id, ExaminedCandidate.conclusion, KnownAnswerTest.candidates)
            .join(ExaminationTask, ExaminationTask.id == ExaminedCandidate.task_id)
            .join(KnownAnswerTest, KnownAnswerTest.id == ExaminationTask.known_answer_id)
            .join(User, User.id == ExaminationTask.reviewer_id)
            .where(ExaminationTask.completed_at.is_not(None), ExaminedCandidate.conclusion.is_not(None))
        )
        if not sees_all:
            query = query.where(User.id == who.user_id)
        elif username is not None:
            query = query.where(User.username == username)
        rows = s.execute(query).all()
        names = (
            [who.username]
            if not sees_all
            else [username]
            if username
            else list(s.execute(select(User.username).where(User.role == Role.REVIEWER.value)).scalars())
        )
    records: dict[str, dict[str, Any]] = {
        n: {"reviewer": n, "mated": _levels(), "non_mated": _levels(), "comparisons": 0, "errors": 0}
        for n in names
        if n
    }
    for name, face_id, conclusion, candidates in rows:
        truth = next((bool(c.get("mated")) for c in candidates if int(c["face_id"]) == int(face_id)), None)
        if truth is None or name not in records:
            continue
        rec = records[name]
        rec["mated" if truth else "non_mated"][conclusion] += 1
        rec["comparisons"] += 1
        s_ = strength(conclusion)
        if s_ is not None and ((truth and s_ < 0) or (not truth and s_ > 0)):
            rec["errors"] += 1  # support for the wrong proposition (neutral and not suitable are not errors)
    with ctx.db.transaction() as s:
        append_audit(
            s,
            actor=who.actor,
            action="examination.proficiency",
            target=f"user:{username}" if username else "proficiency",
            details={"reviewers": len(records), **who.audit_context()},
        )
    return list(records.values())


def _levels() -> dict[str, int]:
    return {c.value: 0 for c in Conclusion}


def scale_definition() -> list[dict[str, Any]]:
    return [
        {"conclusion": c.value, "label": LABELS[c], "strength": strength(c.value), "side": side(c.value)}
        for c in Conclusion
    ]
