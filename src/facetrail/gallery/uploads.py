"""Enrollment of uploaded files (the server's "enroll by upload"), through the same enrollment core as the CLI.

Uploads are written to a private temporary folder, enrolled in this process, and reported file by file:
enrolled (with the new face id), duplicate (the image is already in the gallery, by SHA-256: idempotent), or
rejected with the enrollment core's reason code and detail. The core audits every batch and the run.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select

from facetrail.context import AppContext
from facetrail.errors import BadInputError
from facetrail.gallery.enroll import EnrollOptions, enroll
from facetrail.gallery.manifest import MAX_LENGTHS, EnrollItem
from facetrail.gallery.service import load_gallery
from facetrail.policy.principal import Principal
from facetrail.policy.roles import Permission
from facetrail.storage.models import Face, Subject
from facetrail.text import check_text, find_forbidden

_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class UploadedImage:
    filename: str
    data: bytes
    subject_id: str
    name: str | None = None
    source_record_id: str | None = None
    capture_date: dt.date | None = None
    notes: str = ""


@dataclass(frozen=True)
class FileOutcome:
    filename: str
    sha256: str
    subject_id: str
    status: str  # enrolled | duplicate | rejected
    face_id: int | None = None
    reason: str | None = None  # the enrollment core's stable code, for rejections
    detail: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class UploadEnrollment:
    gallery: str
    summary: dict[str, Any]  # the enrollment core's counts
    files: list[FileOutcome]


def _check_text(field: str, value: str | None, index: int, required: bool = False) -> str | None:
    text = (value or "").strip()
    if not text:
        if required:
            raise BadInputError(f"file {index + 1}: {field} is required", field=field, file=index)
        return None
    limit = MAX_LENGTHS.get(field, 200)
    if len(text) > limit or find_forbidden(text) is not None:
        raise BadInputError(
            f"file {index + 1}: {field} must be at most {limit} characters without control or invisible "
            "formatting characters",
            field=field,
            file=index,
        )
    return text


def enroll_uploads(
    ctx: AppContext, who: Principal, gallery: str, uploads: list[UploadedImage], *, largest_face: bool = False
) -> UploadEnrollment:
    """Enroll each uploaded image as one face of its subject; see the module docstring."""
    from facetrail.faces.pipeline import PIPELINE_LOCK

    who.require(Permission.GALLERY_MANAGE)
    if not uploads:
        raise BadInputError("no files were uploaded", field="files")
    with ctx.db.read() as s:
        gallery_name = load_gallery(s, gallery).name  # unknown gallery: 404 before anything is written
    for i, up in enumerate(uploads):
        _check_text("subject_id", up.subject_id, i, required=True)
        _check_text("name", up.name, i)
        _check_text("source_record_id", up.source_record_id, i)
        check_text("notes", up.notes, max_len=10_000, required=False, multiline=True)
    hashes = [hashlib.sha256(up.data).hexdigest() for up in uploads]
    with tempfile.TemporaryDirectory(prefix="facetrail-upload-") as tmp:
        items = []
        for i, up in enumerate(uploads):
            path = Path(tmp) / f"{i:05d}-{_SAFE_NAME.sub('_', Path(up.filename or 'upload').name)[:80]}"
            path.write_bytes(up.data)
            items.append(
                EnrollItem(
                    path=path,
                    subject_id=up.subject_id.strip(),
                    name=_check_text("name", up.name, i),
                    source_record_id=_check_text("source_record_id", up.source_record_id, i),
                    capture_date=up.capture_date,
                    notes=(up.notes or "").strip(),
                )
            )
        with PIPELINE_LOCK:
            summary = enroll(
                ctx,
                gallery_name,
                items,
                actor=who.actor,
                source="upload",
                options=EnrollOptions(workers=0, largest_face=largest_face),
            )
    rejected = {r.item.path.name: r for r in summary.rejected}
    new_ids = set(summary.face_ids)
    with ctx.db.read() as s:
        gallery_id = load_gallery(s, gallery_name).id
        faces = {
            sha: (fid, ext)
            for sha, fid, ext in s.execute(
                select(Face.image_sha256, Face.id, Subject.external_id)
                .join(Subject, Subject.id == Face.subject_id)
                .where(Face.gallery_id == gallery_id, Face.image_sha256.in_(set(hashes)))
            )
        }
    outcomes: list[FileOutcome] = []
    first_seen: set[str] = set()
    for up, item, sha in zip(uploads, items, hashes, strict=True):
        rejection = rejected.get(item.path.name)
        if rejection is not None:
            outcomes.append(
                FileOutcome(
                    up.filename,
                    sha,
                    item.subject_id,
                    "rejected",
                    reason=rejection.reason,
                    detail=rejection.detail.replace(str(item.path), up.filename),
                )
            )
            continue
        face_id, owner = faces.get(sha, (None, None))
        enrolled_now = face_id in new_ids and sha not in first_seen
        first_seen.add(sha)
        outcomes.append(
            FileOutcome(
                up.filename,
                sha,
                owner or item.subject_id,
                "enrolled" if enrolled_now else "duplicate",
                face_id=face_id,
                detail=None if enrolled_now else "this image is already in the gallery",
            )
        )
    return UploadEnrollment(gallery_name, summary.to_dict(), outcomes)
