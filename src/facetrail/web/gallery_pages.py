"""Galleries for administrators: create, upload photos or a manifest (per-file results), browse, delete.
The work is done by facetrail.gallery.browse and facetrail.gallery.uploads (checked and audited there)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from starlette.datastructures import FormData, UploadFile

from facetrail.accounts import mfa
from facetrail.context import AppContext
from facetrail.errors import BadInputError, FaceTrailError
from facetrail.gallery import browse
from facetrail.gallery.manifest import read_manifest
from facetrail.gallery.uploads import FileOutcome, UploadedImage, enroll_uploads
from facetrail.policy.principal import Principal
from facetrail.policy.roles import Permission
from facetrail.retention.deletion import delete_enrolled_as
from facetrail.service.deps import get_ctx
from facetrail.web.common import csrf_ok, form_data, render, see_other, web_require

router = APIRouter(include_in_schema=False)
PAGE = 48
MANIFEST_SUFFIXES = (".csv", ".jsonl", ".ndjson")


def _galleries_page(request: Request, ctx: AppContext, who: Principal, status: int = 200, **extra: Any) -> Response:
    return render(
        request, "galleries.html", status=status, title="Galleries", galleries=browse.list_galleries(ctx, who), **extra
    )


@router.get("/galleries")
def galleries(
    request: Request, ctx: AppContext = Depends(get_ctx), who: Principal = web_require(Permission.GALLERY_MANAGE)
) -> Response:
    return _galleries_page(request, ctx, who)


@router.post("/galleries")
def gallery_create(
    request: Request,
    ctx: AppContext = Depends(get_ctx),
    who: Principal = web_require(Permission.GALLERY_MANAGE),
    form: FormData = Depends(form_data),
) -> Response:
    csrf_ok(request, form)
    try:
        g = browse.create_gallery(
            ctx,
            who,
            str(form.get("name") or ""),
            legal_basis=str(form.get("legal_basis") or ""),
            source_system=str(form.get("source_system") or ""),
            description=str(form.get("description") or ""),
            retention_rule=str(form.get("retention_rule") or ""),
            keep_images=form.get("keep_images") == "on",
        )
    except FaceTrailError as exc:
        return _galleries_page(request, ctx, who, 422, error=exc.message, form=dict(form))
    return see_other(f"/galleries/{g.name}")


@router.get("/galleries/{name}")
def gallery(
    name: str,
    request: Request,
    q: str = "",
    page: int = 1,
    done: str = "",
    ctx: AppContext = Depends(get_ctx),
    who: Principal = web_require(Permission.GALLERY_MANAGE),
) -> Response:
    summary = browse.get_gallery(ctx, who, name)
    page = max(1, page)
    total, subjects = browse.list_subjects(
        ctx, who, name, query=q.strip() or None, offset=(page - 1) * PAGE, limit=PAGE
    )
    return render(
        request,
        "gallery.html",
        title=f"Gallery {name}",
        g=summary,
        subjects=subjects,
        total=total,
        q=q,
        page=page,
        pages=max(1, -(-total // PAGE)),
        notice="Subject deleted." if done == "deleted" else None,
    )


def _uploads(form: Any) -> list[UploadedImage]:
    """The uploaded photos, each with its subject: from the manifest, one id for all, or each file's name."""
    photos = {}
    for f in form.getlist("photos"):
        if isinstance(f, UploadFile) and f.filename:
            photos[Path(f.filename).name] = f.file.read()
    manifest = form.get("manifest")
    if isinstance(manifest, UploadFile) and manifest.filename:
        return _from_manifest(Path(manifest.filename).name, manifest.file.read(), photos)
    if not photos:
        raise BadInputError("choose one or more photos (and, optionally, a manifest)", field="photos")
    if form.get("subject_mode") == "one":
        subject = str(form.get("subject_id") or "").strip()
        if not subject:
            raise BadInputError("give the subject id that all the photos show", field="subject_id")
        return [UploadedImage(name, data, subject) for name, data in photos.items()]
    return [UploadedImage(name, data, Path(name).stem) for name, data in photos.items()]


def _from_manifest(manifest_name: str, text: bytes, photos: dict[str, bytes]) -> list[UploadedImage]:
    """Rows of a CSV/JSONL manifest (checked by the enrollment core's reader); each ``path`` names an upload."""
    if not manifest_name.lower().endswith(MANIFEST_SUFFIXES):
        raise BadInputError("the manifest must be a .csv or .jsonl file", field="manifest")
    with tempfile.TemporaryDirectory(prefix="facetrail-manifest-") as tmp:
        path = Path(tmp) / ("manifest" + Path(manifest_name).suffix.lower())
        path.write_bytes(text)
        items = read_manifest(path)
    missing = [str(item.path.name) for item in items if item.path.name not in photos]
    if missing:
        raise BadInputError(
            f"the manifest names {len(missing)} file(s) that were not uploaded: " + ", ".join(missing[:10]),
            field="manifest",
        )
    return [
        UploadedImage(
            item.path.name,
            photos[item.path.name],
            item.subject_id,
            item.name,
            item.source_record_id,
            item.capture_date,
            item.notes,
        )
        for item in items
    ]


@router.post("/galleries/{name}/upload")
def gallery_upload(
    name: str,
    request: Request,
    ctx: AppContext = Depends(get_ctx),
    who: Principal = web_require(Permission.GALLERY_MANAGE),
    form: FormData = Depends(form_data),
) -> Response:
    csrf_ok(request, form)
    summary = browse.get_gallery(ctx, who, name)
    try:
        result = enroll_uploads(ctx, who, name, _uploads(form), largest_face=form.get("largest_face") == "on")
    except FaceTrailError as exc:
        return render(
            request, "gallery_upload_result.html", status=422, title="Upload", g=summary, rows=[], error=exc.message
        )
    rows: list[FileOutcome] = result.files
    return render(
        request,
        "gallery_upload_result.html",
        title="Upload results",
        g=browse.get_gallery(ctx, who, name),
        rows=rows,
        result=result.summary,
    )


@router.get("/galleries/{name}/subjects/{external_id}")
def subject(
    name: str,
    external_id: str,
    request: Request,
    ctx: AppContext = Depends(get_ctx),
    who: Principal = web_require(Permission.FACES_BROWSE),
) -> Response:
    return render(
        request,
        "subject.html",
        title=f"Subject {external_id}",
        s=browse.get_subject(ctx, who, name, external_id),
        may_delete=who.can(Permission.GALLERY_MANAGE),
    )


@router.get("/faces/{face_id}/thumbnail.jpg")
def thumbnail(
    face_id: int, ctx: AppContext = Depends(get_ctx), who: Principal = web_require(Permission.FACES_BROWSE)
) -> Response:
    return Response(
        browse.face_thumbnail(ctx, who, face_id),
        media_type="image/jpeg",
        headers={"cache-control": "private, no-store"},
    )


@router.get("/galleries/{name}/subjects/{external_id}/delete")
def subject_delete_confirm(
    name: str,
    external_id: str,
    request: Request,
    ctx: AppContext = Depends(get_ctx),
    who: Principal = web_require(Permission.GALLERY_MANAGE),
) -> Response:
    from facetrail.gallery.service import get_subject  # metadata only: no faces are shown on this page

    return render(request, "subject_delete.html", title="Delete subject", s=get_subject(ctx, name, external_id))


@router.post("/galleries/{name}/subjects/{external_id}/delete")
def subject_delete(
    name: str,
    external_id: str,
    request: Request,
    ctx: AppContext = Depends(get_ctx),
    who: Principal = web_require(Permission.GALLERY_MANAGE),
    form: FormData = Depends(form_data),
) -> Response:
    from facetrail.gallery.service import get_subject

    csrf_ok(request, form)
    reason = str(form.get("reason") or "").strip()
    if not reason:
        return render(
            request,
            "subject_delete.html",
            status=422,
            title="Delete subject",
            s=get_subject(ctx, name, external_id),
            error="Say why the subject is deleted.",
        )
    mfa.require_fresh_second_factor(ctx, who, "deleting a subject")
    delete_enrolled_as(ctx, who, name, external_id=external_id, reason=reason)
    return see_other(f"/galleries/{name}?done=deleted")
