"""Galleries, their subjects and faces: list and show (gallery.read), create, enroll by upload and delete
(gallery.manage), browse subjects with their face thumbnails (faces.browse, audited)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Query, UploadFile
from pydantic import BaseModel, Field

from facetrail.accounts import mfa
from facetrail.context import AppContext
from facetrail.errors import BadInputError
from facetrail.gallery import browse
from facetrail.gallery.service import GallerySummary
from facetrail.gallery.uploads import UploadedImage, enroll_uploads
from facetrail.policy.principal import Principal
from facetrail.policy.roles import Permission
from facetrail.retention.deletion import delete_enrolled_as
from facetrail.service.api._common import ERROR_RESPONSES, IdPath, read_upload
from facetrail.service.deps import get_ctx, require

router = APIRouter(prefix="/galleries", tags=["galleries"], responses=ERROR_RESPONSES)
MAX_FILES_PER_UPLOAD = 200


class GalleryOut(BaseModel):
    id: int
    name: str
    description: str
    legal_basis: str
    source_system: str
    retention_rule: str
    model_id: str
    keep_images: bool
    created_at: str
    created_by: str
    subjects: int
    faces: int


class GalleryCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    legal_basis: str = Field(min_length=1, max_length=10_000, description="Why this gallery may lawfully be held.")
    source_system: str = Field(min_length=1, max_length=200, description="Where its images come from.")
    description: str = Field("", max_length=10_000)
    retention_rule: str = Field("", max_length=10_000)
    keep_images: bool = Field(True, description="Keep the original images (content-addressed) besides the faces.")


class FileResult(BaseModel):
    filename: str
    sha256: str
    subject_id: str
    status: str = Field(description="enrolled | duplicate | rejected")
    face_id: int | None
    reason: str | None = Field(description="For rejections: no_face, multiple_faces, quality_fail, image_* ...")
    detail: str | None


class EnrollCounts(BaseModel):
    total: int
    processed: int
    enrolled: int
    skipped_duplicate: int
    rejected: int
    rejected_by_reason: dict[str, int]
    subjects_created: int


class EnrollResult(BaseModel):
    gallery: str
    summary: EnrollCounts
    files: list[FileResult]


class SubjectSummary(BaseModel):
    subject_id: int
    external_id: str
    name: str | None
    faces: int
    created_at: dt.datetime


class SubjectPage(BaseModel):
    total: int
    items: list[SubjectSummary]


class FaceOut(BaseModel):
    face_id: int
    image_sha256: str
    image_stored: bool
    source_system: str
    source_record_id: str | None
    capture_date: str | None
    enrolled_by: str
    enrolled_at: str
    quality: str | None
    model_id: str
    thumbnail_url: str


class SubjectDetail(BaseModel):
    gallery: str
    subject_id: int
    external_id: str
    name: str | None
    notes: str
    created_at: str
    faces: list[FaceOut]


class Deleted(BaseModel):
    gallery: str
    external_id: str | None = None
    deleted_face_ids: list[int]


def _out(g: GallerySummary) -> GalleryOut:
    return GalleryOut(**g.to_dict())


@router.get("", response_model=list[GalleryOut], summary="List galleries")
def list_galleries(
    ctx: AppContext = Depends(get_ctx), who: Principal = Depends(require(Permission.GALLERY_READ))
) -> list[GalleryOut]:
    return [_out(g) for g in browse.list_galleries(ctx, who)]


@router.post("", response_model=GalleryOut, status_code=201, summary="Create a gallery (audited)")
def create_gallery(
    body: GalleryCreate,
    ctx: AppContext = Depends(get_ctx),
    who: Principal = Depends(require(Permission.GALLERY_MANAGE)),
) -> GalleryOut:
    return _out(
        browse.create_gallery(
            ctx,
            who,
            body.name,
            legal_basis=body.legal_basis,
            source_system=body.source_system,
            description=body.description,
            retention_rule=body.retention_rule,
            keep_images=body.keep_images,
        )
    )


@router.get("/{name}", response_model=GalleryOut, summary="Show a gallery")
def get_gallery(
    name: str, ctx: AppContext = Depends(get_ctx), who: Principal = Depends(require(Permission.GALLERY_READ))
) -> GalleryOut:
    return _out(browse.get_gallery(ctx, who, name))


def _per_file(values: list[str] | None, n: int, field: str) -> list[str | None]:
    """A per-file form field: absent, one value for every file, or exactly one value per file."""
    if not values:
        return [None] * n
    if len(values) == 1:
        return [values[0]] * n
    if len(values) != n:
        raise BadInputError(
            f"{field}: give one value for all files or one per file ({n}), not {len(values)}", field=field
        )
    return list(values)


@router.post(
    "/{name}/enroll",
    response_model=EnrollResult,
    summary="Enroll uploaded photos: one face per photo, reasons per rejected file, idempotent by hash",
)
def enroll(
    name: str,
    files: Annotated[list[UploadFile], File(description="One or more photos; each must show exactly one face.")],
    subject_ids: Annotated[
        list[str], Form(description="The subject's external id: one for all files, or one per file in the same order.")
    ],
    names: Annotated[list[str] | None, Form(description="Optional subject names (one, or one per file).")] = None,
    source_record_ids: Annotated[
        list[str] | None, Form(description="Provenance: record ids in the source system (one, or one per file).")
    ] = None,
    capture_dates: Annotated[
        list[dt.date] | None, Form(description="Provenance: capture dates YYYY-MM-DD (one, or one per file).")
    ] = None,
    largest_face: Annotated[bool, Form(description="Several faces: enroll the largest instead of rejecting.")] = False,
    ctx: AppContext = Depends(get_ctx),
    who: Principal = Depends(require(Permission.GALLERY_MANAGE)),
) -> EnrollResult:
    if len(files) > MAX_FILES_PER_UPLOAD:
        raise BadInputError(f"at most {MAX_FILES_PER_UPLOAD} files per upload", field="files")
    n = len(files)
    subjects = _per_file(subject_ids, n, "subject_ids")
    subject_names = _per_file(names, n, "names")
    records = _per_file(source_record_ids, n, "source_record_ids")
    dates = [
        dt.date.fromisoformat(d) if d else None
        for d in _per_file([d.isoformat() for d in capture_dates or []], n, "capture_dates")
    ]
    max_bytes = ctx.settings.images.max_bytes
    uploads = [
        UploadedImage(
            filename=(f.filename or f"file-{i + 1}")[:200],
            data=read_upload(f, "files", max_bytes),
            subject_id=subjects[i] or "",
            name=subject_names[i],
            source_record_id=records[i],
            capture_date=dates[i],
        )
        for i, f in enumerate(files)
    ]
    result = enroll_uploads(ctx, who, name, uploads, largest_face=largest_face)
    return EnrollResult(
        gallery=result.gallery,
        summary=EnrollCounts(**result.summary),
        files=[FileResult(**f.to_dict()) for f in result.files],
    )


@router.get("/{name}/subjects", response_model=SubjectPage, summary="List a gallery's subjects")
def list_subjects(
    name: str,
    q: Annotated[str | None, Query(max_length=200, description="External id prefix")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    ctx: AppContext = Depends(get_ctx),
    who: Principal = Depends(require(Permission.FACES_BROWSE)),
) -> SubjectPage:
    total, items = browse.list_subjects(ctx, who, name, limit=limit, offset=offset, query=q)
    return SubjectPage(total=total, items=[SubjectSummary(**i) for i in items])


@router.get(
    "/{name}/subjects/{external_id}",
    response_model=SubjectDetail,
    summary="Show a subject and its faces (audited: reveals faces)",
)
def get_subject(
    name: str,
    external_id: str,
    ctx: AppContext = Depends(get_ctx),
    who: Principal = Depends(require(Permission.FACES_BROWSE)),
) -> SubjectDetail:
    subject = browse.get_subject(ctx, who, name, external_id)
    faces = [FaceOut(**f, thumbnail_url=f"/api/v1/faces/{f['face_id']}/thumbnail") for f in subject.pop("faces")]
    return SubjectDetail(**subject, faces=faces)


@router.delete(
    "/{name}/subjects/{external_id}",
    response_model=Deleted,
    summary="Delete a subject, its faces, vectors and images (audited)",
)
def delete_subject(
    name: str,
    external_id: str,
    reason: Annotated[str, Query(max_length=2000)] = "",
    ctx: AppContext = Depends(get_ctx),
    who: Principal = Depends(require(Permission.GALLERY_MANAGE)),
) -> Deleted:
    mfa.require_fresh_second_factor(ctx, who, "deleting a subject")
    return Deleted(**delete_enrolled_as(ctx, who, name, external_id=external_id, reason=reason))


@router.delete("/{name}/faces/{face_id}", response_model=Deleted, summary="Delete one face (audited)")
def delete_face(
    name: str,
    face_id: IdPath,
    reason: Annotated[str, Query(max_length=2000)] = "",
    ctx: AppContext = Depends(get_ctx),
    who: Principal = Depends(require(Permission.GALLERY_MANAGE)),
) -> Deleted:
    return Deleted(**delete_enrolled_as(ctx, who, name, face_id=face_id, reason=reason))
