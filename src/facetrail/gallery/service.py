"""Galleries and their subjects and faces: create, list, show, delete. Every change is audited in its own
transaction; deletions also remove the vectors from the index and the originals from the image store.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from facetrail.audit.log import append_audit
from facetrail.config import Settings
from facetrail.context import AppContext
from facetrail.errors import BadInputError, ModelMismatchError, NotFoundError
from facetrail.faces.pipeline import FacePipeline, get_pipeline
from facetrail.gallery.imagestore import AnyImageStore, open_image_store
from facetrail.storage.models import Face, Gallery, Subject
from facetrail.text import check_text


class GalleryNotFoundError(NotFoundError):
    code = "gallery_not_found"


class GalleryExistsError(BadInputError):
    code = "gallery_exists"


class SubjectNotFoundError(NotFoundError):
    code = "subject_not_found"


class FaceNotFoundError(NotFoundError):
    code = "face_not_found"


@dataclass(frozen=True)
class GallerySummary:
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

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def pipeline_for(settings: Settings) -> FacePipeline:
    """The pipeline for these settings, cached on the settings that shape it only (not paths or the database),
    so every context with the same face settings shares one loaded model."""
    face_only = settings.model_copy(
        update={
            "data_dir": Path("facetrail-data"),
            "database_url": None,
            "audit_key_path": None,
            "audit": type(settings.audit)(),
        }
    )
    return get_pipeline(face_only)


def image_store(ctx: AppContext) -> AnyImageStore:
    return open_image_store(ctx, "images")


def _summaries(session: Session, where: Any = None) -> list[GallerySummary]:
    subjects = (select(Subject.gallery_id, func.count().label("n")).group_by(Subject.gallery_id)).subquery()
    faces = (select(Face.gallery_id, func.count().label("n")).group_by(Face.gallery_id)).subquery()
    query = (
        select(Gallery, func.coalesce(subjects.c.n, 0), func.coalesce(faces.c.n, 0))
        .outerjoin(subjects, subjects.c.gallery_id == Gallery.id)
        .outerjoin(faces, faces.c.gallery_id == Gallery.id)
        .order_by(Gallery.name)
    )
    if where is not None:
        query = query.where(where)
    out = []
    for g, n_subjects, n_faces in session.execute(query).all():
        out.append(
            GallerySummary(
                id=g.id,
                name=g.name,
                description=g.description,
                legal_basis=g.legal_basis,
                source_system=g.source_system,
                retention_rule=g.retention_rule,
                model_id=g.model_id,
                keep_images=g.keep_images,
                created_at=g.created_at.isoformat(),
                created_by=g.created_by,
                subjects=int(n_subjects),
                faces=int(n_faces),
            )
        )
    return out


def _require_text(field: str, value: str, max_len: int) -> str:
    return check_text(field, value, max_len=max_len)


def create_gallery(
    ctx: AppContext,
    name: str,
    *,
    legal_basis: str,
    source_system: str,
    actor: str,
    description: str = "",
    retention_rule: str = "",
    keep_images: bool = True,
) -> GallerySummary:
    """A new, empty gallery bound for life to the configured embedder's model id."""
    name = _require_text("name", name, 200)
    legal_basis = check_text("legal basis", legal_basis, max_len=10_000, multiline=True)
    description = check_text("description", description, max_len=10_000, required=False, multiline=True)
    source_system = _require_text("source", source_system, 200)
    model_id = pipeline_for(ctx.settings).model_id
    try:
        with ctx.db.transaction() as session:
            if session.execute(select(Gallery.id).where(Gallery.name == name)).first():
                raise GalleryExistsError(f"a gallery named {name!r} already exists", gallery=name)
            gallery = Gallery(
                name=name,
                description=description,
                legal_basis=legal_basis,
                source_system=source_system,
                retention_rule=retention_rule.strip(),
                model_id=model_id,
                keep_images=keep_images,
                created_by=actor,
            )
            session.add(gallery)
            session.flush()
            append_audit(
                session,
                actor=actor,
                action="gallery.create",
                target=f"gallery:{name}",
                details={
                    "gallery_id": gallery.id,
                    "name": name,
                    "legal_basis": legal_basis,
                    "source_system": source_system,
                    "description": gallery.description,
                    "retention_rule": gallery.retention_rule,
                    "model_id": model_id,
                    "keep_images": keep_images,
                },
            )
    except IntegrityError:  # a concurrent create won the race for the name
        raise GalleryExistsError(f"a gallery named {name!r} already exists", gallery=name) from None
    return get_gallery(ctx, name)


def list_galleries(ctx: AppContext) -> list[GallerySummary]:
    with ctx.db.read() as session:
        return _summaries(session)


def get_gallery(ctx: AppContext, name: str) -> GallerySummary:
    with ctx.db.read() as session:
        found = _summaries(session, Gallery.name == name)
    if not found:
        raise GalleryNotFoundError(f"no gallery named {name!r}", gallery=name)
    return found[0]


def load_gallery(session: Session, name: str) -> Gallery:
    gallery = session.execute(select(Gallery).where(Gallery.name == name)).scalar_one_or_none()
    if gallery is None:
        raise GalleryNotFoundError(f"no gallery named {name!r}", gallery=name)
    return gallery


def check_model(ctx: AppContext, gallery: Gallery) -> str:
    """The configured embedder's model id, which must be the gallery's: vectors of two models never mix."""
    configured = pipeline_for(ctx.settings).model_id
    if gallery.model_id != configured:
        raise ModelMismatchError(
            f"gallery {gallery.name!r} holds embeddings of model {gallery.model_id!r}, but the configured "
            f"embedder is {configured!r}; configure the gallery's model (or create a new gallery)",
            gallery=gallery.name,
            gallery_model=gallery.model_id,
            configured_model=configured,
        )
    return configured


def get_subject(ctx: AppContext, gallery_name: str, external_id: str) -> dict[str, Any]:
    with ctx.db.read() as session:
        gallery = load_gallery(session, gallery_name)
        subject = load_subject(session, gallery, external_id)
        faces = session.execute(select(Face).where(Face.subject_id == subject.id).order_by(Face.id)).scalars()
        return {
            "gallery": gallery.name,
            "subject_id": subject.id,
            "external_id": subject.external_id,
            "name": subject.name,
            "notes": subject.notes,
            "created_at": subject.created_at.isoformat(),
            "faces": [
                {
                    "face_id": f.id,
                    "image_sha256": f.image_sha256,
                    "image_stored": f.image_stored,
                    "source_system": f.source_system,
                    "source_record_id": f.source_record_id,
                    "capture_date": f.capture_date.isoformat() if f.capture_date else None,
                    "enrolled_by": f.enrolled_by,
                    "enrolled_at": f.enrolled_at.isoformat(),
                    "quality": f.quality.get("verdict"),
                    "model_id": f.model_id,
                }
                for f in faces
            ],
        }


def load_subject(session: Session, gallery: Gallery, external_id: str) -> Subject:
    """The gallery's subject ``external_id`` (in the caller's session), or SubjectNotFoundError."""
    subject = session.execute(
        select(Subject).where(Subject.gallery_id == gallery.id, Subject.external_id == external_id)
    ).scalar_one_or_none()
    if subject is None:
        raise SubjectNotFoundError(
            f"gallery {gallery.name!r} has no subject {external_id!r}", gallery=gallery.name, subject=external_id
        )
    return subject


def referenced_hashes(session: Session) -> set[str]:
    return set(session.execute(select(Face.image_sha256).where(Face.image_stored.is_(True)).distinct()).scalars())


def sweep_image_store(ctx: AppContext) -> int | None:
    """Remove stored images no face refers to (left by an interrupted run); None if an enrollment is running."""
    store = image_store(ctx)
    with store.exclusive_lock_if_free() as locked:
        if not locked:
            return None
        with ctx.db.read() as session:
            referenced = referenced_hashes(session)
        return store.sweep(referenced)


__all__ = [
    "FaceNotFoundError",
    "GalleryExistsError",
    "GalleryNotFoundError",
    "GallerySummary",
    "SubjectNotFoundError",
    "check_model",
    "create_gallery",
    "get_gallery",
    "get_subject",
    "list_galleries",
    "load_gallery",
    "load_subject",
]
