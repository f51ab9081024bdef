"""1:N search of a probe photo against a gallery: a ranked CANDIDATE LIST of investigative leads.

A candidate is never an identification: each needs human review. Every search states its purpose (case
number, offense code, reason), and is recorded (SearchRecord) together with its audit record in one database
transaction: if the audit record cannot be written, the search leaves no record and returns nothing.
A probe is never added to a gallery; its SHA-256 is always recorded, the image itself only when
``settings.keep_probe_images`` is on. Searches refused before they run (bad fields, unknown gallery, model
mismatch, unusable probe) are audited with outcome 'refused'.

Disclosure: the audit record of a search never names a candidate. It holds ``candidates_commitment``,
SHA-256 over a random per-search salt and the canonical JSON of the candidate list as stored
(``commitment_for``); the list and the salt stay in the searches table, which only the searcher and the unit's
reviewers may read through FaceTrail. An auditor proves the list unchanged (``check_commitment``) without
seeing who is on it, and a released list can be proven to a court by disclosing it with its salt. A
'verify_subject' search (a 1:1 check of a named subject) commits to the named subject the same way.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select

from facetrail.audit.log import append_audit, canonical_json
from facetrail.audit.refusals import audit_refusal
from facetrail.context import AppContext
from facetrail.errors import BadInputError, FaceTrailError
from facetrail.faces.calibration import Calibration, load_calibration
from facetrail.faces.decode import read_image_bytes
from facetrail.faces.pipeline import AnalyzedFace
from facetrail.faces.subject_score import DEFAULT_RULE, subject_fmr, subject_score
from facetrail.faces.types import DecodedImage
from facetrail.gallery.imagestore import AnyImageStore, open_image_store
from facetrail.gallery.index_sync import get_gallery_index
from facetrail.gallery.service import check_model, load_gallery
from facetrail.storage.models import Face, SearchRecord, Subject
from facetrail.text import check_text, normalize_case_number

log = logging.getLogger(__name__)

LEADS_NOTICE = "Investigative leads only — not an identification. Each candidate requires human review."
MIN_CANDIDATES, MAX_CANDIDATES, DEFAULT_CANDIDATES = 2, 50, 20
FIELD_LIMITS = {"case_number": 100, "offense": 100, "reason": 2000}
SEARCH_DEPTH_FACTOR = 4  # faces retrieved per subject asked for, first; multiplied by 4 until enough subjects
MAX_SEARCH_DEPTH = 5000  # faces retrieved at most to fill a list with distinct subjects
MAX_FACES_LISTED = 50  # faces of one candidate kept for its expansion (best first); the score uses all


@dataclass(frozen=True)
class SearchPurpose:
    """Why a search is run; required, and recorded with it."""

    case_number: str
    offense: str
    reason: str


def clean_field(field_name: str, value: str | None, max_len: int) -> str:
    """Trimmed text, or a BadInputError naming the field: required, not blank, bounded, one line, no control
    or invisible formatting characters (facetrail.text)."""
    return check_text(field_name, value, max_len=max_len)


def validate_purpose(case_number: str | None, offense: str | None, reason: str | None) -> SearchPurpose:
    return SearchPurpose(
        clean_field("case_number", normalize_case_number(case_number), FIELD_LIMITS["case_number"]),
        clean_field("offense", offense, FIELD_LIMITS["offense"]),
        clean_field("reason", reason, FIELD_LIMITS["reason"]),
    )


def validate_candidates(candidates: int) -> int:
    if isinstance(candidates, bool) or not isinstance(candidates, int):
        raise BadInputError("candidates must be a whole number", field="candidates")
    if not MIN_CANDIDATES <= candidates <= MAX_CANDIDATES:
        raise BadInputError(
            f"candidates must be between {MIN_CANDIDATES} and {MAX_CANDIDATES}, got {candidates}",
            field="candidates",
        )
    return candidates


@dataclass(frozen=True)
class CandidateFace:
    """One enrolled face of a candidate subject, as scored against the probe."""

    face_id: int
    similarity: float

    def to_dict(self) -> dict[str, Any]:
        return {"face_id": self.face_id, "similarity": round(self.similarity, 5)}


@dataclass(frozen=True)
class SubjectHit:
    """A retrieved subject, every enrolled face scored (best first), before it is recorded."""

    subject_id: int
    subject_external_id: str
    faces: tuple[CandidateFace, ...]  # all of the subject's enrolled faces, best first
    score: float
    fmr: float  # subject-level: a stranger with this many faces scoring at least this high
    face_fmr: float  # the best face's, as for a single comparison
    meaning: str
    rule: str

    @property
    def best(self) -> CandidateFace:
        return self.faces[0]

    def faces_above(self, floor: float) -> int:
        return sum(1 for f in self.faces if f.similarity >= floor)


def score_subject(
    subject_id: int,
    external_id: str,
    scored: list[tuple[int, float]],
    calibration: Calibration,
    rule: str = DEFAULT_RULE,
) -> SubjectHit:
    """A subject's hit from (face id, similarity) of ALL of its enrolled faces."""
    faces = tuple(CandidateFace(fid, sim) for fid, sim in sorted(scored, key=lambda h: (-h[1], h[0])))
    score = subject_score([f.similarity for f in faces], rule)
    face_fmr = calibration.fmr_at(score)
    fmr = subject_fmr(face_fmr, len(faces))
    return SubjectHit(
        subject_id, external_id, faces, score, fmr, face_fmr, describe_subject(fmr, len(faces), calibration), rule
    )


def describe_subject(fmr: float, faces: int, calibration: Calibration) -> str:
    """What a subject-level FMR means, in words."""
    photos = "one enrolled photo" if faces == 1 else f"{faces} enrolled photos"
    bound = subject_fmr(calibration.resolution, faces)
    if fmr <= bound:
        return (
            f"fewer than 1 in {round(1 / bound):,} different people with {photos} score this high "
            f"(beyond the calibration table's resolution)"
        )
    return f"about 1 in {round(1 / fmr):,} different people with {photos} score this high (FMR ≈ {fmr:.1e})"


@dataclass(frozen=True)
class Candidate:
    rank: int
    face_id: int  # the subject's best-matching face: the one shown, and the key of the candidate's reviews
    subject_id: int
    subject_external_id: str
    similarity: float  # the subject's score (rule ``score_rule``)
    estimated_fmr: float  # subject-level
    score_meaning: str
    thumbnail: bytes  # the best face's aligned crop, JPEG
    thumbnail_path: Path | None
    faces_enrolled: int = 1
    faces_above_floor: int = 1
    faces: tuple[CandidateFace, ...] = ()
    score_rule: str = DEFAULT_RULE
    face_fmr: float | None = None  # the FMR of one comparison at this score

    def to_dict(self) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "similarity": round(self.similarity, 5),
            "estimated_fmr": self.estimated_fmr,
            "score_meaning": self.score_meaning,
            "score_rule": self.score_rule,
            "subject_external_id": self.subject_external_id,
            "subject_id": self.subject_id,
            "face_id": self.face_id,
            "faces_enrolled": self.faces_enrolled,
            "faces_above_floor": self.faces_above_floor,
            "faces": [f.to_dict() for f in self.faces],
            "thumbnail_path": str(self.thumbnail_path) if self.thumbnail_path else None,
        }


@dataclass(frozen=True)
class SearchResult:
    search_id: int
    created_at: dt.datetime
    actor: str
    gallery: str
    gallery_id: int
    model_id: str
    purpose: SearchPurpose
    probe_sha256: str
    probe_stored: bool
    face_index: int
    faces_in_probe: int
    probe_quality: str
    candidates_requested: int
    gallery_size: int
    candidates: list[Candidate]
    results_dir: Path | None

    def expected_false_matches(self, candidate: Candidate) -> float:
        """About how many faces of different people in a gallery this size score at least this high (FMR × N,
        the face-level FMR times the gallery's faces: also a bound on how many different SUBJECTS do): in 1:N
        search the chance of a high-scoring stranger grows with the gallery."""
        fmr = candidate.estimated_fmr if candidate.face_fmr is None else candidate.face_fmr
        return float(f"{fmr * self.gallery_size:.3g}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "candidate_list",
            "notice": LEADS_NOTICE,
            "search_id": self.search_id,
            "created_at": self.created_at.isoformat(),
            "actor": self.actor,
            "gallery": self.gallery,
            "gallery_size": self.gallery_size,
            "model_id": self.model_id,
            "case_number": self.purpose.case_number,
            "offense": self.purpose.offense,
            "reason": self.purpose.reason,
            "probe": {
                "sha256": self.probe_sha256,
                "stored": self.probe_stored,
                "face_index": self.face_index,
                "faces_detected": self.faces_in_probe,
                "quality": self.probe_quality,
            },
            "candidates_requested": self.candidates_requested,
            "results_dir": str(self.results_dir) if self.results_dir else None,
            "candidates": [
                {**c.to_dict(), "expected_false_matches": self.expected_false_matches(c)} for c in self.candidates
            ],
        }


def commitment_for(salt_hex: str, value: Any) -> str:
    """SHA-256 over the salt's bytes and the value's canonical JSON: binds the record without revealing it."""
    return hashlib.sha256(bytes.fromhex(salt_hex) + canonical_json(value).encode("utf-8")).hexdigest()


def check_commitment(ctx: AppContext, search_id: int) -> dict[str, Any]:
    """Recompute a search's commitment from the stored list and compare it with its audit record: whether the
    candidate list (and named subject) is what the search produced. Reveals no candidate."""
    from facetrail.storage.models import AuditRecord

    with ctx.db.read() as s:
        record = s.get(SearchRecord, search_id)
        if record is None:
            return {"search_id": search_id, "found": False}
        needle = f'"search_id":{search_id}'
        audits = [
            a
            for a in s.execute(
                select(AuditRecord).where(
                    AuditRecord.action == "search",
                    AuditRecord.outcome == "ok",
                    AuditRecord.target == f"gallery:{record.gallery_name}",
                    AuditRecord.details.contains(needle, autoescape=True),
                )
            ).scalars()
        ]
        mine = [a for a in audits if json.loads(a.details).get("search_id") == search_id]
        out: dict[str, Any] = {"search_id": search_id, "found": True, "audit_seq": mine[0].seq if mine else None}
        if not mine or record.candidates_salt is None:
            return {**out, "committed": False, "matches": None}
        details = json.loads(mine[0].details)
        expected = details.get("candidates_commitment")
        actual = commitment_for(record.candidates_salt, record.candidates)
        subject_ok = True
        if record.subject_requested is not None:
            subject_ok = details.get("subject_commitment") == commitment_for(
                record.candidates_salt, record.subject_requested
            )
        return {**out, "committed": True, "matches": expected == actual and subject_ok}


def results_root(ctx: AppContext) -> Path:
    return ctx.data_dir / "results"


def probe_store(ctx: AppContext) -> AnyImageStore:
    return open_image_store(ctx, "probes")


@dataclass(frozen=True)
class _Probe:
    """The probe's chosen face, checked against the gallery it is to be compared with."""

    gallery_id: int
    gallery_name: str
    model_id: str
    data: bytes
    image: DecodedImage
    face: AnalyzedFace
    faces_in_probe: int
    calibration: Calibration

    @property
    def vector(self) -> np.ndarray:
        assert self.face.embedding is not None
        return self.face.embedding.vector


def _prepare_probe(
    ctx: AppContext,
    probe: bytes | str | Path,
    gallery: str,
    face_index: int | None,
    attempted: dict[str, Any],
    analyzed: tuple[DecodedImage, AnalyzedFace, int] | None = None,
) -> _Probe:
    with ctx.db.read() as session:
        target = load_gallery(session, gallery)
        gallery_id, gallery_name, gallery_model = target.id, target.name, target.model_id
        model_id = check_model(ctx, target)
    data = bytes(probe) if isinstance(probe, bytes | bytearray) else read_image_bytes(probe, ctx.settings.images)
    if analyzed is not None:
        image, face, faces_in_probe = analyzed
        attempted["probe_sha256"] = image.sha256
    else:
        image = ctx.pipeline.decode(data)
        attempted["probe_sha256"] = image.sha256
        face, faces_in_probe = ctx.pipeline.analyze_one(image, face_index)
    calibration = load_calibration(gallery_model)
    return _Probe(gallery_id, gallery_name, model_id, data, image, face, faces_in_probe, calibration)


def search_gallery(
    ctx: AppContext,
    probe: bytes | str | Path,
    *,
    gallery: str,
    case_number: str | None,
    offense: str | None,
    reason: str | None,
    actor: str,
    candidates: int = DEFAULT_CANDIDATES,
    face_index: int | None = None,
    write_thumbnails: bool = True,
    user_id: int | None = None,
    unit_id: int | None = None,
    legal_basis: str | None = None,
    analyzed: tuple[DecodedImage, AnalyzedFace, int] | None = None,
    similarity_floor: float | None = None,
    probe_declaration: str = "original",
) -> SearchResult:
    """Search the probe's face (the largest unless ``face_index`` is given) against the named gallery.

    ``user_id``/``unit_id`` scope the record to its searcher and unit (the server's search history);
    ``legal_basis`` is recorded with it when given. ``analyzed`` is the probe (``probe`` as bytes) already
    decoded, with its chosen face embedded and its face count, from a caller that checked face choice and
    quality first: the probe is then not analysed a second time. ``similarity_floor`` (default: the server
    setting; the server passes its policy's) is what each candidate's count of faces above the floor uses."""
    floor = ctx.settings.server.similarity_floor if similarity_floor is None else float(similarity_floor)
    attempted: dict[str, Any] = {
        "gallery": gallery,
        "case_number": case_number,
        "offense": offense,
        "reason": reason,
        "candidates_requested": candidates,
        "face_index": face_index,
    }
    scope = {
        "user_id": user_id,
        "unit_id": unit_id,
        "legal_basis": legal_basis,
        "probe_declaration": probe_declaration,
    }
    if legal_basis is not None:
        attempted["legal_basis"] = legal_basis
    try:
        purpose = validate_purpose(case_number, offense, reason)
        k = validate_candidates(candidates)
        p = _prepare_probe(ctx, probe, gallery, face_index, attempted, analyzed)
    except FaceTrailError as exc:
        audit_refusal(ctx, actor, "search", f"gallery:{gallery}", exc, details=attempted, outcome="refused")
        raise
    index = get_gallery_index(ctx, p.gallery_id, actor=actor)
    hits = subject_hits(ctx, index, p.gallery_id, p.vector, k, p.calibration)
    return _record(ctx, actor, purpose, k, p, index.count, hits, write_thumbnails, scope, floor)


def _face_subjects(ctx: AppContext, gallery_id: int, face_ids: list[int]) -> dict[int, int]:
    with ctx.db.read() as session:
        rows = session.execute(
            select(Face.id, Face.subject_id).where(Face.id.in_(face_ids), Face.gallery_id == gallery_id)
        ).all()
    return {int(fid): int(sid) for fid, sid in rows}


def subject_hits(
    ctx: AppContext,
    index: Any,
    gallery_id: int,
    vector: np.ndarray,
    k: int,
    calibration: Calibration,
    rule: str = DEFAULT_RULE,
) -> list[SubjectHit]:
    """The k best subjects: the index is searched until it yields k distinct subjects (or all of the gallery,
    or MAX_SEARCH_DEPTH faces), then every enrolled face of the first 2k subjects found is scored exactly and
    the subjects are ranked by their score (ties: lower subject id first)."""
    total = index.count
    depth = min(total, max(k * SEARCH_DEPTH_FACTOR, k), MAX_SEARCH_DEPTH)
    order: list[int] = []
    while depth > 0:
        _, ids = index.search(vector, depth)
        subject_of = _face_subjects(ctx, gallery_id, [int(i) for i in ids])
        order = list(dict.fromkeys(subject_of[int(i)] for i in ids if int(i) in subject_of))
        if len(order) >= 2 * k or depth >= min(total, MAX_SEARCH_DEPTH):
            break
        depth = min(total, depth * 4, MAX_SEARCH_DEPTH)
    wanted = order[: 2 * k]
    if not wanted:
        return []
    with ctx.db.read() as session:
        rows = session.execute(
            select(Face.id, Face.subject_id, Face.embedding, Subject.external_id)
            .join(Subject, Subject.id == Face.subject_id)
            .where(Face.subject_id.in_(wanted), Face.gallery_id == gallery_id)
        ).all()
    by_subject: dict[int, list[tuple[int, float]]] = {}
    names: dict[int, str] = {}
    for fid, sid, emb, external_id in rows:
        by_subject.setdefault(int(sid), []).append((int(fid), float(np.frombuffer(emb, dtype="<f4") @ vector)))
        names[int(sid)] = external_id
    hits = [score_subject(sid, names[sid], by_subject[sid], calibration, rule) for sid in wanted if sid in by_subject]
    hits.sort(key=lambda h: (-h.score, h.subject_id))
    return hits[:k]


def _record(
    ctx: AppContext,
    actor: str,
    purpose: SearchPurpose,
    k: int,
    probe: _Probe,
    gallery_size: int,
    hits: list[SubjectHit],
    write_thumbnails: bool,
    scope: dict[str, Any] | None = None,
    floor: float = 0.0,
) -> SearchResult:
    """Write the search record, its audit record and its files as one unit; undo the files if it fails."""
    image, probe_data, gallery_id, gallery_name = probe.image, probe.data, probe.gallery_id, probe.gallery_name
    model_id, face_index, faces_in_probe = probe.model_id, probe.face.index, probe.faces_in_probe
    probe_quality = probe.face.quality.verdict
    written: list[Path] = []
    stored_probe: str | None = None  # written to the probe store by this search: removed if it fails
    results_dir: Path | None = None
    try:
        with ctx.db.transaction() as session:
            rows = {
                row.id: row
                for row in session.execute(
                    select(Face.id, Face.subject_id, Face.thumbnail, Subject.external_id)
                    .join(Subject, Subject.id == Face.subject_id)
                    .where(Face.id.in_([h.best.face_id for h in hits]), Face.gallery_id == gallery_id)
                )
            }
            # a subject whose best face was deleted between the search and now is dropped, never reported
            live = [h for h in hits if h.best.face_id in rows]
            probe_stored = False
            if ctx.settings.keep_probe_images:
                store = probe_store(ctx)
                if not store.exists(image.sha256):
                    store.put(image.sha256, probe_data)
                    stored_probe = image.sha256
                probe_stored = True
            scope = scope or {}
            salt = secrets.token_hex(32)
            record = SearchRecord(
                kind=scope.get("kind") or "search",
                subject_requested=scope.get("subject"),
                candidates_salt=salt,
                actor=actor,
                user_id=scope.get("user_id"),
                unit_id=scope.get("unit_id"),
                legal_basis=scope.get("legal_basis") or "",
                gallery_id=gallery_id,
                gallery_name=gallery_name,
                case_number=purpose.case_number,
                offense=purpose.offense,
                reason=purpose.reason,
                probe_sha256=image.sha256,
                probe_stored=probe_stored,
                probe_declaration=scope.get("probe_declaration") or "original",
                face_index=face_index,
                faces_in_probe=faces_in_probe,
                model_id=model_id,
                candidates_requested=k,
                candidates=[stored_candidate(rank, h, floor) for rank, h in enumerate(live, start=1)],
            )
            session.add(record)
            session.flush()
            if write_thumbnails and live:
                results_dir = results_root(ctx) / str(record.id)
                results_dir.mkdir(parents=True, exist_ok=False)
                written.append(results_dir)
            candidates = []
            for rank, h in enumerate(live, start=1):
                fid = h.best.face_id
                row = rows[fid]
                path = None
                if results_dir is not None:
                    path = results_dir / f"rank-{rank:02d}-face-{fid}.jpg"
                    path.write_bytes(row.thumbnail)
                candidates.append(
                    Candidate(
                        rank,
                        fid,
                        row.subject_id,
                        row.external_id,
                        h.score,
                        h.fmr,
                        h.meaning,
                        row.thumbnail,
                        path,
                        faces_enrolled=len(h.faces),
                        faces_above_floor=h.faces_above(floor),
                        faces=h.faces[:MAX_FACES_LISTED],
                        score_rule=h.rule,
                        face_fmr=h.face_fmr,
                    )
                )
            append_audit(
                session,
                actor=actor,
                action="search",
                target=f"gallery:{gallery_name}",
                details={
                    "search_id": record.id,
                    "case_number": purpose.case_number,
                    "offense": purpose.offense,
                    "reason": purpose.reason,
                    **({"legal_basis": scope["legal_basis"]} if scope.get("legal_basis") else {}),
                    **({"unit_id": scope["unit_id"]} if scope.get("unit_id") is not None else {}),
                    "gallery": gallery_name,
                    "gallery_id": gallery_id,
                    "model_id": model_id,
                    "index_kind": ctx.settings.index.kind,
                    "probe_sha256": image.sha256,
                    "probe_stored": probe_stored,
                    "probe_declaration": record.probe_declaration,
                    "face_index": face_index,
                    "faces_in_probe": faces_in_probe,
                    "candidates_requested": k,
                    # never the candidates themselves: a salted commitment to the stored list (module docstring)
                    "candidates_commitment": commitment_for(salt, record.candidates),
                    **({"kind": record.kind} if record.kind != "search" else {}),
                    **(
                        {"subject_commitment": commitment_for(salt, record.subject_requested)}
                        if record.subject_requested is not None
                        else {}
                    ),
                },
            )
            search_id, created_at = record.id, record.created_at
    except BaseException:
        if stored_probe is not None:
            probe_store(ctx).remove(stored_probe)
        for path in reversed(written):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        raise
    return SearchResult(
        search_id,
        created_at,
        actor,
        gallery_name,
        gallery_id,
        model_id,
        purpose,
        image.sha256,
        probe_stored,
        face_index,
        faces_in_probe,
        probe_quality,
        k,
        gallery_size,
        candidates,
        results_dir,
    )


def stored_candidate(rank: int, hit: SubjectHit, floor: float) -> dict[str, Any]:
    """A candidate as the searches table keeps it (and the audit record commits to)."""
    return {
        "rank": rank,
        "face_id": hit.best.face_id,
        "subject_id": hit.subject_id,
        "subject_external_id": hit.subject_external_id,
        "similarity": round(hit.score, 5),
        "fmr": hit.fmr,
        "face_fmr": hit.face_fmr,
        "score_rule": hit.rule,
        "faces_enrolled": len(hit.faces),
        "faces_above_floor": hit.faces_above(floor),
        "faces": [f.to_dict() for f in hit.faces[:MAX_FACES_LISTED]],
    }


def candidate_faces(c: dict[str, Any], floor: float) -> tuple[int, int, list[dict[str, Any]]]:
    """(faces enrolled, faces at or above the floor, faces best first) of a stored candidate. A search recorded
    before candidates were subjects lists its one face."""
    faces = c.get("faces") or [{"face_id": int(c["face_id"]), "similarity": float(c["similarity"])}]
    faces = [{"face_id": int(f["face_id"]), "similarity": float(f["similarity"])} for f in faces]
    enrolled = int(c.get("faces_enrolled", len(faces)))
    above = c.get("faces_above_floor")
    return enrolled, int(above) if above is not None else sum(f["similarity"] >= floor for f in faces), faces


# 1:1 check of one named subject: a search like any other ------------------------------------------------


def search_subject(
    ctx: AppContext,
    probe: bytes,
    *,
    gallery: str,
    subject: str,
    case_number: str | None,
    offense: str | None,
    reason: str | None,
    actor: str,
    analyzed: tuple[DecodedImage, AnalyzedFace, int],
    user_id: int | None,
    unit_id: int | None,
    legal_basis: str | None,
    similarity_floor: float | None = None,
    probe_declaration: str = "original",
) -> SearchResult:
    """Compare the probe's face with one named subject's enrolled faces, recorded as a search of kind
    'verify_subject' whose candidate list is that subject (scored over all of its faces, its best face shown),
    or empty when the gallery holds
    no such subject: an unknown subject and one below the similarity floor leave the same trace as "no lead".
    The caller (cases.searches.run_subject_check) has passed the search gate; reviews release the result."""
    subject_id = clean_field("subject", subject, 200)
    attempted: dict[str, Any] = {
        "gallery": gallery,
        "case_number": case_number,
        "offense": offense,
        "reason": reason,
        "kind": "verify_subject",
        "legal_basis": legal_basis,
    }
    try:
        purpose = validate_purpose(case_number, offense, reason)
        p = _prepare_probe(ctx, probe, gallery, None, attempted, analyzed)
    except FaceTrailError as exc:
        audit_refusal(ctx, actor, "search", f"gallery:{gallery}", exc, details=attempted, outcome="refused")
        raise
    with ctx.db.read() as session:
        rows = session.execute(
            select(Face.id, Face.embedding, Subject.id)
            .join(Subject, Subject.id == Face.subject_id)
            .where(Subject.gallery_id == p.gallery_id, Subject.external_id == subject_id)
            .order_by(Face.id)
        ).all()
    scored = [(int(fid), float(np.frombuffer(emb, dtype="<f4") @ p.vector)) for fid, emb, _ in rows]
    hits = [score_subject(int(rows[0][2]), subject_id, scored, p.calibration)] if rows else []
    return _record(
        ctx,
        actor,
        purpose,
        1,
        p,
        len(rows),
        hits,
        False,
        {
            "user_id": user_id,
            "unit_id": unit_id,
            "probe_declaration": probe_declaration,
            "legal_basis": legal_basis,
            "kind": "verify_subject",
            "subject": subject_id,
        },
        ctx.settings.server.similarity_floor if similarity_floor is None else float(similarity_floor),
    )
