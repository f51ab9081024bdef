"""The investigative lead report: one per RELEASED lead (a candidate two examiners' conclusions released under
the policy's rule), as a PDF (lead_report_pdf.py) on its own and as a section of the case's disclosure packet.

What it holds: the case and the search; the probe (its SHA-256, what the searcher declared it to be, and the
image itself where kept and the reader may see faces) and the candidate (the released subject, its enrolled
image's SHA-256 and the image); every enhancement either examiner made of the probe or of the candidate's photos
(operation, parameters, purpose, who, when, the parent's and the result's SHA-256, and the enhanced images);
each examiner's probe analysis, FISWG checklist (every characteristic's mark and comment), annotations and
measurements (observations, never a score), conclusion with its reasoning and limitations, and any
adjudication; the notice that it is an investigative lead only and NOT a positive identification; and what must
still be corroborated before any action.

Who (reports/leads.py): those who may have the case's disclosure packet (reviewers of the search's unit,
auditors — auditors without any image, hashes only); only for a released lead (anything else is refused,
audited). Generating a report on its own is audited ('lead.report', with the PDF's SHA-256); in the packet,
with the packet ('case.packet').
"""

from __future__ import annotations

import base64
from typing import Any

import cv2
from sqlalchemy import select
from sqlalchemy.orm import Session

from facetrail.context import AppContext
from facetrail.errors import FaceTrailError, NotFoundError
from facetrail.examination.enhanced_images import ImageEnhancement, enhanced_store
from facetrail.examination.models import ExaminationTask, ExaminedCandidate, ProbeAnalysisRecord
from facetrail.examination.scale import LABELS, parse
from facetrail.gallery.search import LEADS_NOTICE, probe_store
from facetrail.gallery.service import image_store
from facetrail.reports.common import iso
from facetrail.storage.models import Face, SearchRecord, Unit, User

ACTION = "lead.report"
DISPLAY_MAX_SIDE = 640  # the PDF shows a display copy; the hashes name the original files
LEAD_NOTICE = (
    "INVESTIGATIVE LEAD ONLY — NOT A POSITIVE IDENTIFICATION. This candidate was found by an automated face "
    "search and examined by two trained reviewers. Their conclusions are opinions on the similarity of two "
    "images, not an identification of a person, and are not probable cause for an arrest on their own."
)
CORROBORATION = (
    "Independent evidence that places the candidate at the place and time of the offense (or excludes them), "
    "obtained without relying on this face search.",
    "Identity established by means independent of the face search (documents, records, witnesses who know the "
    "person), and the candidate's alibi checked.",
    "No photo array or line-up built around this candidate on the strength of this lead alone; if one is used, "
    "it is administered blind and its limits recorded.",
    "Every difference the examiners recorded (dissimilar features below) explained by evidence, not assumed.",
    "The examiners' stated limitations (below) weighed by whoever acts on this lead.",
)
DECLARATION_CAVEAT = {
    "edited": "The searcher declared the probe EDITED: features in it may not be the person's own. Treat any "
    "resemblance with particular caution.",
    "composite_sketch": "The searcher declared the probe a COMPOSITE SKETCH: it is an impression, not a photograph "
    "of the person. A resemblance to a sketch is weak evidence.",
}


class LeadNotReleasedError(FaceTrailError):
    """A lead report exists only for a released lead."""

    code = "lead_not_released"
    http_status = 404


class LeadSearchNotFoundError(NotFoundError):
    code = "search_not_found"


def _display_jpeg(data: bytes | None, ctx: AppContext) -> str | None:
    """A display copy (JPEG, at most DISPLAY_MAX_SIDE px) of an image, base64; None if it cannot be decoded."""
    if not data:
        return None
    from facetrail.examination.enhance import decode

    try:
        pixels = decode(data, ctx.settings.images)
    except FaceTrailError:
        return None
    height, width = pixels.shape[:2]
    scale = min(1.0, DISPLAY_MAX_SIDE / max(height, width))
    if scale < 1.0:
        pixels = cv2.resize(
            pixels, (max(1, int(width * scale)), max(1, int(height * scale))), interpolation=cv2.INTER_AREA
        )
    ok, jpeg = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, 88])
    return base64.b64encode(jpeg.tobytes()).decode("ascii") if ok else None


def _mark_rows(marks: dict[str, Any]) -> list[dict[str, str]]:
    from facetrail.examination import fiswg

    labels = {key: label for key, (label, _chars) in fiswg.COMPONENTS.items()}
    rows = []
    for component, characteristics in (marks or {}).items():
        for characteristic, entry in (characteristics or {}).items():
            rows.append(
                {
                    "component": labels.get(component, component),
                    "characteristic": characteristic.replace("_", " "),
                    "mark": str((entry or {}).get("mark", "")).replace("_", " "),
                    "comment": str((entry or {}).get("comment", "")),
                }
            )
    return rows


def _examinations(session: Session, record: SearchRecord, face_ids: set[int]) -> list[dict[str, Any]]:
    rows = session.execute(
        select(ExaminationTask, User)
        .join(User, User.id == ExaminationTask.reviewer_id)
        .where(ExaminationTask.search_id == record.id)
        .order_by(ExaminationTask.id)
    ).all()
    out = []
    for number, (task, user) in enumerate(rows, start=1):
        analysis = session.execute(
            select(ProbeAnalysisRecord).where(ProbeAnalysisRecord.task_id == task.id)
        ).scalar_one_or_none()
        examined = session.execute(
            select(ExaminedCandidate).where(
                ExaminedCandidate.task_id == task.id, ExaminedCandidate.face_id.in_(face_ids)
            )
        ).scalar_one_or_none()
        conclusion = examined.conclusion if examined is not None else None
        level = parse(conclusion or "")
        out.append(
            {
                "examiner": number,
                "reviewer": user.username,
                "reviewer_name": user.display_name or user.username,
                "assigned_at": iso(task.assigned_at),
                "completed_at": iso(task.completed_at) if task.completed_at else None,
                "probe_analysis": None
                if analysis is None
                else {
                    "suitable": analysis.suitable,
                    "quality": analysis.quality,
                    "notes": analysis.notes,
                    "recorded_at": iso(analysis.recorded_at),
                },
                "conclusion": conclusion,
                "conclusion_label": LABELS[level] if level is not None else "no conclusion recorded",
                "reasoning": examined.reasoning if examined is not None else "",
                "limitations": examined.limitations if examined is not None else "",
                "concluded_at": iso(examined.concluded_at) if examined and examined.concluded_at else None,
                "seen_order": examined.seen_order if examined is not None else None,
                "checklist": _mark_rows(examined.marks if examined is not None else {}),
                "annotations": list(examined.annotations or []) if examined is not None else [],
                "measurements": list(examined.measurements or []) if examined is not None else [],
            }
        )
    return out


def _enhancements(
    ctx: AppContext, session: Session, record: SearchRecord, face_ids: set[int], images: bool
) -> list[dict[str, Any]]:
    rows = session.execute(
        select(ImageEnhancement, User.username)
        .outerjoin(User, User.id == ImageEnhancement.user_id)
        .where(ImageEnhancement.search_id == record.id)
        .order_by(ImageEnhancement.id)
    ).all()
    store = enhanced_store(ctx) if images else None
    out = []
    for row, username in rows:
        if row.image_kind != "probe" and row.face_id not in face_ids:
            continue  # another candidate's photo
        data = store.get(row.result_sha256) if store is not None and row.image_stored else None
        out.append(
            {
                "image": row.image_kind,
                "original_sha256": row.original_sha256,
                "parent_sha256": row.parent_sha256,
                "sha256": row.result_sha256,
                "step": row.step,
                "operation": row.operation,
                "parameters": dict(row.parameters),
                "steps": [dict(s) for s in row.steps],
                "purpose": row.purpose,
                "by": username or row.actor,
                "at": iso(row.created_at),
                "image_stored": row.image_stored,
                "jpeg_base64": _display_jpeg(data, ctx) if data else None,
            }
        )
    return out


def collect_lead(
    ctx: AppContext, session: Session, record: SearchRecord, face_id: int, *, include_images: bool
) -> dict[str, Any]:
    """The report's data for one released lead of ``record`` (the caller checked that it is released)."""
    candidate = next(c for c in record.candidates if int(c["face_id"]) == face_id)
    face = session.get(Face, face_id)
    subject_faces = (
        {int(f) for f in session.execute(select(Face.id).where(Face.subject_id == face.subject_id)).scalars()}
        if face is not None
        else {face_id}
    )
    searcher = session.get(User, record.user_id) if record.user_id is not None else None
    unit = session.get(Unit, record.unit_id) if record.unit_id is not None else None
    probe_data = probe_store(ctx).get(record.probe_sha256) if include_images and record.probe_stored else None
    cand_data = image_store(ctx).get(face.image_sha256) if include_images and face and face.image_stored else None
    if include_images and cand_data is None and face is not None:
        cand_data = bytes(face.thumbnail)
    declaration = getattr(record, "probe_declaration", "original") or "original"
    examinations = _examinations(session, record, {face_id})
    return {
        "kind": "investigative_lead_report",
        "case_number": record.case_number,
        "search_id": record.id,
        "run_at": iso(record.created_at),
        "run_by": searcher.username if searcher is not None else record.actor,
        "unit": unit.name if unit is not None else None,
        "offense": record.offense,
        "legal_basis": record.legal_basis or None,
        "gallery": record.gallery_name,
        "model_id": record.model_id,
        "notice": LEAD_NOTICE,
        "search_notice": LEADS_NOTICE,
        "lead": {
            "rank": int(candidate["rank"]),
            "subject_external_id": str(candidate["subject_external_id"]),
            "subject_id": int(candidate["subject_id"]),
            "face_id": face_id,
            "similarity": float(candidate["similarity"]),
            "estimated_fmr": float(candidate["fmr"]),
        },
        "probe": {
            "sha256": record.probe_sha256,
            "declaration": declaration,
            "declaration_caveat": DECLARATION_CAVEAT.get(declaration),
            "image_kept": record.probe_stored,
            "jpeg_base64": _display_jpeg(probe_data, ctx),
        },
        "candidate": {
            "image_sha256": face.image_sha256 if face is not None else None,
            "image_kept": bool(face and face.image_stored),
            "capture_date": str(getattr(face, "capture_date", None) or "") or None,
            "jpeg_base64": _display_jpeg(cand_data, ctx),
        },
        "images_included": include_images,
        "enhancements": _enhancements(ctx, session, record, subject_faces, include_images),
        "examinations": examinations,
        "differences": [
            {"examiner": e["examiner"], **row}
            for e in examinations
            for row in e["checklist"]
            if row["mark"] == "dissimilar"
        ],
        "corroboration": list(CORROBORATION),
    }


def released_leads(ctx: AppContext, record: SearchRecord) -> list[int]:
    """The face ids of the search's released leads, in rank order."""
    from facetrail.governance.release import released_faces

    released = released_faces(ctx, record)
    return [int(c["face_id"]) for c in record.candidates if int(c["face_id"]) in released]
