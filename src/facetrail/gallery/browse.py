"""Galleries for signed-in users: permission-checked wrappers over gallery.service, and the views that reveal
enrolled faces (subject pages, thumbnails), each of which is audited."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from facetrail.audit.log import append_audit
from facetrail.context import AppContext
from facetrail.gallery import service as galleries
from facetrail.gallery.service import FaceNotFoundError, GallerySummary, load_gallery
from facetrail.policy.principal import Principal
from facetrail.policy.roles import Permission
from facetrail.storage.models import Face, Subject


def list_galleries(ctx: AppContext, who: Principal) -> list[GallerySummary]:
    who.require(Permission.GALLERY_READ)
    return galleries.list_galleries(ctx)


def get_gallery(ctx: AppContext, who: Principal, name: str) -> GallerySummary:
    who.require(Permission.GALLERY_READ)
    return galleries.get_gallery(ctx, name)


def create_gallery(
    ctx: AppContext,
    who: Principal,
    name: str,
    *,
    legal_basis: str,
    source_system: str,
    description: str = "",
    retention_rule: str = "",
    keep_images: bool = True,
) -> GallerySummary:
    who.require(Permission.GALLERY_MANAGE)
    return galleries.create_gallery(
        ctx,
        name,
        legal_basis=legal_basis,
        source_system=source_system,
        actor=who.actor,
        description=description,
        retention_rule=retention_rule,
        keep_images=keep_images,
    )


def list_subjects(
    ctx: AppContext, who: Principal, gallery: str, *, limit: int = 50, offset: int = 0, query: str | None = None
) -> tuple[int, list[dict[str, Any]]]:
    """(total, page) of a gallery's subjects by external id, with their face counts. No faces shown."""
    who.require(Permission.FACES_BROWSE)
    with ctx.db.read() as s:
        g = load_gallery(s, gallery)
        q = select(Subject).where(Subject.gallery_id == g.id)
        if query:
            q = q.where(Subject.external_id.startswith(query, autoescape=True))
        total = s.execute(select(func.count()).select_from(q.subquery())).scalar_one()
        page = list(s.execute(q.order_by(Subject.external_id).limit(limit).offset(offset)).scalars())
        counts = dict(
            s.execute(
                select(Face.subject_id, func.count())
                .where(Face.subject_id.in_([p.id for p in page]))
                .group_by(Face.subject_id)
            ).all()
        )
        return int(total), [
            {
                "subject_id": p.id,
                "external_id": p.external_id,
                "name": p.name,
                "faces": int(counts.get(p.id, 0)),
                "created_at": p.created_at,
            }
            for p in page
        ]


def get_subject(ctx: AppContext, who: Principal, gallery: str, external_id: str) -> dict[str, Any]:
    """A subject with its faces (the caller is shown their thumbnails): audited as 'subject.view'."""
    who.require(Permission.FACES_BROWSE)
    subject = galleries.get_subject(ctx, gallery, external_id)
    with ctx.db.transaction() as s:
        append_audit(
            s,
            actor=who.actor,
            action="subject.view",
            target=f"gallery:{subject['gallery']}",
            details={
                "external_id": external_id,
                "face_ids": [f["face_id"] for f in subject["faces"]],
                **who.audit_context(),
            },
        )
    return subject


def face_thumbnail(ctx: AppContext, who: Principal, face_id: int) -> bytes:
    """An enrolled face's aligned crop (JPEG): audited as 'face.view'."""
    who.require(Permission.FACES_BROWSE)
    with ctx.db.transaction() as s:
        face = s.get(Face, face_id)
        append_audit(
            s,
            actor=who.actor,
            action="face.view",
            target=f"face:{face_id}",
            outcome="ok" if face else "not_found",
            details=who.audit_context(),
        )
        if face is not None:
            return bytes(face.thumbnail)
    raise FaceNotFoundError(f"no face {face_id}", face_id=face_id)
