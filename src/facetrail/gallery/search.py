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
class Candidate:
    rank: int
    face_id: int
    subject_id: int
    subject_external_id: str
    similarity: float
    estimated_fmr: float
    score_meaning: str
    thumbnail: bytes  # the enrolled face's aligned crop, JPEG
    thumbnail_path: Path | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "similarity": round(self.similarity, 5),
            "estimated_fmr": self.estimated_fmr,
            "score_meaning": self.score_meaning,
            "subject_external_id": self.subject_external_id,
            "subject_id": self.subject_id,
            "face_id": self.face_id,
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
        """About how many faces of different people in a gallery this size score at least this high (FMR × N):
        in 1:N search the chance of a high-scoring stranger grows with the gallery."""
        return float(f"{candidate.estimated_fmr * self.gallery_size:.3g}")

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
    probe_declaration: str = "original",
) -> SearchResult:
    """Search the probe's face (the largest unless ``face_index`` is given) against the named gallery.

    ``user_id``/``unit_id`` scope the record to its searcher and unit (the server's search history);
    ``legal_basis`` is recorded with it when given. ``analyzed`` is the probe (``probe`` as bytes) already
    decoded, with its chosen face embedded and its face count, from a caller that checked face choice and
    quality first: the probe is then not analysed a second time."""
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
    scores, ids = index.search(p.vector, k)
    cal = p.calibration
    hits = [(int(i), float(s), cal.fmr_at(float(s)), cal.describe(float(s))) for i, s in zip(ids, scores, strict=True)]
    return _record(ctx, actor, purpose, k, p, index.count, hits, write_thumbnails, scope)


def _record(
    ctx: AppContext,
    actor: str,
    purpose: SearchPurpose,
    k: int,
    probe: _Probe,
    gallery_size: int,
    hits: list[tuple[int, float, float, str]],
    write_thumbnails: bool,
    scope: dict[str, Any] | None = None,
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
                    .where(Face.id.in_([h[0] for h in hits]), Face.gallery_id == gallery_id)
                )
            }
            # a face deleted between the index search and now is dropped, never reported
            live = [h for h in hits if h[0] in rows]
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
                candidates=[
                    {
                        "rank": rank,
                        "face_id": fid,
                        "subject_id": rows[fid].subject_id,
                        "subject_external_id": rows[fid].external_id,
                        "similarity": round(score, 5),
                        "fmr": fmr,
                    }
                    for rank, (fid, score, fmr, _) in enumerate(live, start=1)
                ],
            )
            session.add(record)
            session.flush()
            if write_thumbnails and live:
                results_dir = results_root(ctx) / str(record.id)
                results_dir.mkdir(parents=True, exist_ok=False)
                written.append(results_dir)
            candidates = []
            for rank, (fid, score, fmr, meaning) in enumerate(live, start=1):
                row = rows[fid]
                path = None
                if results_dir is not None:
                    path = results_dir / f"rank-{rank:02d}-face-{fid}.jpg"
                    path.write_bytes(row.thumbnail)
                candidates.append(
                    Candidate(rank, fid, row.subject_id, row.external_id, score, fmr, meaning, row.thumbnail, path)
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
    probe_declaration: str = "original",
) -> SearchResult:
    """Compare the probe's face with one named subject's enrolled faces, recorded as a search of kind
    'verify_subject' whose candidate list is that subject's best-scoring face, or empty when the gallery holds
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
            select(Face.id, Face.embedding)
            .join(Subject, Subject.id == Face.subject_id)
            .where(Subject.gallery_id == p.gallery_id, Subject.external_id == subject_id)
            .order_by(Face.id)
        ).all()
    scored = sorted(
        ((int(fid), float(np.frombuffer(emb, dtype="<f4") @ p.vector)) for fid, emb in rows), key=lambda h: -h[1]
    )
    cal = p.calibration
    hits = [(fid, score, cal.fmr_at(score), cal.describe(score)) for fid, score in scored[:1]]
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
    )
