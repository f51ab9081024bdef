"""Bulk load of precomputed embeddings: faces whose vectors already exist (a migration from another system
running the same model, or synthetic galleries for benchmarks), written in large batches without analysing
images.

Guarantees, the same as enrolment's (gallery/enroll.py):

- Every batch is one transaction holding its faces, any new subjects and one 'enroll.batch' audit record
  (source ``bulk-load``); the face triggers append the gallery change log in that same transaction, so every
  server process and host picks the faces up from the log (O(changes)) at its next search; the loading
  process too, once at the end (then saves its index snapshot), not after every batch. One closing
  'enroll.run' record gives the counts. Nothing is written without its audit record.
- Faces whose image hash the gallery already holds are skipped (the unique constraint backs the skip), so a
  load that stopped half way is finished by running it again, with nothing duplicated or lost.
- Vectors are checked before anything is written: the gallery's model (the caller names it), one dimension,
  finite, L2-normalised. A batch that fails the checks raises BadInputError and writes nothing.
- Batches stay small (``batch_size``, default 1,000 faces): each face bumps the gallery's version row, and on
  PostgreSQL updating one row many times in one transaction costs O(updates²); the gallery row lock is never
  held long either. On PostgreSQL the loader vacuums the galleries table every few batches (the dead versions
  of that row would otherwise slow every later bump) and writes faces with COPY.

No route or CLI command exposes it: it is for the local operator's own code (and bench/). The faces carry no
box or quality measurements (``{}``) and the thumbnail the caller gives (a placeholder when none exists).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import insert, select, text
from sqlalchemy.orm import Session

from facetrail.audit.log import append_audit
from facetrail.context import AppContext
from facetrail.errors import BadInputError, ModelMismatchError
from facetrail.gallery.index_sync import flush_indexes, get_gallery_index
from facetrail.gallery.service import GalleryNotFoundError
from facetrail.storage.models import Face, Gallery, Subject, utcnow

SOURCE = "bulk-load"
DEFAULT_BATCH_SIZE = 1_000
VACUUM_EVERY_BATCHES = 10
NORM_TOLERANCE = 1e-3
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class FaceRows:
    """Columns of faces to load: row ``i`` is a face of subject ``external_ids[i]`` (created in the gallery if
    new) with image hash ``image_sha256[i]`` and embedding ``embeddings[i]`` (float32, L2-normalised)."""

    external_ids: Sequence[str]
    image_sha256: Sequence[str]
    embeddings: np.ndarray
    source_record_ids: Sequence[str | None] | None = None
    thumbnails: Sequence[bytes] | None = None  # one per face; None: the load's placeholder thumbnail

    def __len__(self) -> int:
        return len(self.external_ids)


@dataclass
class BulkLoadReport:
    gallery: str
    loaded: int = 0
    skipped_duplicate: int = 0
    subjects_created: int = 0
    batches: int = 0
    seconds: float = 0.0
    first_face_id: int | None = None
    last_face_id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "gallery": self.gallery,
            "loaded": self.loaded,
            "skipped_duplicate": self.skipped_duplicate,
            "subjects_created": self.subjects_created,
            "batches": self.batches,
            "seconds": round(self.seconds, 3),
        }


def _check_rows(rows: FaceRows, dim: int | None) -> np.ndarray:
    n = len(rows)
    vectors = np.asarray(rows.embeddings)
    if vectors.ndim != 2 or vectors.shape[0] != n:
        raise BadInputError(f"expected {n} embeddings as an (n, dim) array, got shape {vectors.shape}")
    if len(rows.image_sha256) != n or (rows.source_record_ids is not None and len(rows.source_record_ids) != n):
        raise BadInputError("external_ids, image_sha256 and source_record_ids must have one entry per face")
    if rows.thumbnails is not None and len(rows.thumbnails) != n:
        raise BadInputError("thumbnails must have one entry per face")
    if dim is not None and vectors.shape[1] != dim:
        raise BadInputError(f"embeddings have {vectors.shape[1]} dimensions; the gallery's have {dim}")
    vectors = vectors.astype("<f4", copy=False)
    if not np.isfinite(vectors).all():
        raise BadInputError("embeddings must be finite")
    norms = np.linalg.norm(vectors, axis=1)
    if n and np.abs(norms - 1.0).max() > NORM_TOLERANCE:
        raise BadInputError("embeddings must be L2-normalised")
    for value in rows.image_sha256:
        if not isinstance(value, str) or _SHA256_HEX.fullmatch(value) is None:
            raise BadInputError(f"not a lowercase SHA-256 hex digest: {value!r}")
    for value in rows.external_ids:
        if not isinstance(value, str) or not value or len(value) > 200:
            raise BadInputError("a subject id must have 1 to 200 characters")
    return vectors


def _gallery_dim(ctx: AppContext, gallery_id: int) -> int | None:
    with ctx.db.read() as session:
        blob = session.execute(select(Face.embedding).where(Face.gallery_id == gallery_id).limit(1)).scalar()
    return None if blob is None else len(blob) // 4


def bulk_load_embeddings(
    ctx: AppContext,
    gallery_name: str,
    chunks: Iterable[FaceRows],
    *,
    actor: str,
    model_id: str,
    source_system: str,
    placeholder_thumbnail: bytes,
    batch_size: int = DEFAULT_BATCH_SIZE,
    update_index: bool = True,
) -> BulkLoadReport:
    """Load the faces of ``chunks`` into the gallery, ``batch_size`` faces per transaction (see the module
    docstring). ``model_id`` is the model that computed the embeddings: it must be the gallery's.
    ``update_index=False`` leaves this process's index alone (a loader that does not search: its next load,
    like every other process's, applies the change log)."""
    if batch_size < 1:
        raise BadInputError("batch_size must be at least 1")
    started = time.perf_counter()
    with ctx.db.read() as session:
        gallery = session.execute(select(Gallery).where(Gallery.name == gallery_name)).scalar_one_or_none()
        if gallery is None:
            raise GalleryNotFoundError(f"no gallery named {gallery_name!r}", gallery=gallery_name)
        gallery_id, gallery_model = gallery.id, gallery.model_id
    if model_id != gallery_model:
        raise ModelMismatchError(
            f"the embeddings are of model {model_id!r}; gallery {gallery_name!r} holds {gallery_model!r}",
            gallery=gallery_name,
            gallery_model=gallery_model,
            configured_model=model_id,
        )
    report = BulkLoadReport(gallery=gallery_name)
    dim = _gallery_dim(ctx, gallery_id)
    if update_index:  # loaded before, so the faces are applied from the log after
        get_gallery_index(ctx, gallery_id, actor=actor)
    completed = False
    try:
        for rows in chunks:
            vectors = _check_rows(rows, dim)
            dim = int(vectors.shape[1]) if len(rows) else dim
            for begin in range(0, len(rows), batch_size):
                end = min(len(rows), begin + batch_size)
                batch = _Batch(gallery_id, gallery_name, gallery_model, actor, source_system, placeholder_thumbnail)
                batch.commit(ctx, report, rows, vectors, begin, end)
                if report.batches % VACUUM_EVERY_BATCHES == 0:
                    _vacuum_gallery_row(ctx)
        completed = True
    finally:
        if update_index and report.loaded:  # this process follows the change log like any other, then saves
            get_gallery_index(ctx, gallery_id, actor=actor)
            flush_indexes(ctx)
        report.seconds = time.perf_counter() - started
        with ctx.db.transaction() as session:
            append_audit(
                session,
                actor=actor,
                action="enroll.run",
                target=f"gallery:{gallery_name}",
                outcome="ok" if completed else "interrupted",
                details={
                    "gallery_id": gallery_id,
                    "model_id": gallery_model,
                    "source": SOURCE,
                    "enrolled": report.loaded,
                    "skipped_duplicate": report.skipped_duplicate,
                    "subjects_created": report.subjects_created,
                    "batches": report.batches,
                },
            )
    return report


@dataclass(frozen=True)
class _Batch:
    gallery_id: int
    gallery_name: str
    model_id: str
    actor: str
    source_system: str
    placeholder_thumbnail: bytes

    def commit(
        self, ctx: AppContext, report: BulkLoadReport, rows: FaceRows, vectors: np.ndarray, begin: int, end: int
    ) -> None:
        """Rows ``begin:end`` in one transaction: new subjects, the faces not yet in the gallery, the audit
        record (the triggers log each face in the change log)."""
        hashes = list(rows.image_sha256[begin:end])
        with ctx.db.transaction() as session:
            present = set(
                session.execute(
                    select(Face.image_sha256).where(Face.gallery_id == self.gallery_id, Face.image_sha256.in_(hashes))
                ).scalars()
            )
            keep = []
            for i in range(begin, end):
                if rows.image_sha256[i] not in present:
                    present.add(rows.image_sha256[i])
                    keep.append(i)
            external_ids = sorted({rows.external_ids[i] for i in keep})
            subjects: dict[str, int] = {
                external_id: subject_id
                for subject_id, external_id in session.execute(
                    select(Subject.id, Subject.external_id).where(
                        Subject.gallery_id == self.gallery_id, Subject.external_id.in_(external_ids)
                    )
                )
            }
            missing = [e for e in external_ids if e not in subjects]
            now = utcnow()
            if missing:
                created = session.execute(
                    insert(Subject).returning(Subject.id, Subject.external_id, sort_by_parameter_order=True),
                    [
                        {"gallery_id": self.gallery_id, "external_id": e, "name": None, "notes": "", "created_at": now}
                        for e in missing
                    ],
                )
                subjects.update({external_id: subject_id for subject_id, external_id in created})
            face_rows = [
                {
                    "gallery_id": self.gallery_id,
                    "subject_id": subjects[rows.external_ids[i]],
                    "image_sha256": rows.image_sha256[i],
                    "image_stored": False,
                    "source_system": self.source_system,
                    "source_record_id": rows.source_record_ids[i] if rows.source_record_ids else None,
                    "capture_date": None,
                    "enrolled_by": self.actor,
                    "enrolled_at": now,
                    "box": {},
                    "quality": {},
                    "model_id": self.model_id,
                    "embedding": vectors[i].tobytes(),
                    "thumbnail": rows.thumbnails[i] if rows.thumbnails else self.placeholder_thumbnail,
                }
                for i in keep
            ]
            face_ids = _insert_faces(session, self.gallery_id, face_rows)
            append_audit(
                session,
                actor=self.actor,
                action="enroll.batch",
                target=f"gallery:{self.gallery_name}",
                details={
                    "gallery_id": self.gallery_id,
                    "model_id": self.model_id,
                    "source": SOURCE,
                    "enrolled": len(face_ids),
                    "skipped_duplicate": (end - begin) - len(keep),
                    "face_ids": face_ids,
                    "subjects_created": len(missing),  # a count, never the subjects' ids (as enrolment)
                },
            )
        report.batches += 1
        report.loaded += len(face_ids)
        report.skipped_duplicate += (end - begin) - len(keep)
        report.subjects_created += len(missing)
        if face_ids:
            report.first_face_id = face_ids[0] if report.first_face_id is None else report.first_face_id
            report.last_face_id = face_ids[-1]


def _vacuum_gallery_row(ctx: AppContext) -> None:
    """PostgreSQL: every face bumps its gallery's row, so a load leaves one dead row version per face; left to
    autovacuum they pile up in the table and its primary key and every later bump walks them (the load slows
    as it goes). Vacuuming the one-row-per-gallery table is a few milliseconds."""
    if ctx.db.engine.dialect.name != "postgresql":
        return
    with ctx.db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM galleries"))


_COPY_COLUMNS = (
    "gallery_id",
    "subject_id",
    "image_sha256",
    "image_stored",
    "source_system",
    "source_record_id",
    "capture_date",
    "enrolled_by",
    "enrolled_at",
    "box",
    "quality",
    "model_id",
    "embedding",
    "thumbnail",
)


def _insert_faces(session: Session, gallery_id: int, face_rows: list[dict[str, Any]]) -> list[int]:
    """Insert the rows (the triggers fire per row either way); their ids in row order. PostgreSQL: COPY, a
    few times faster than INSERT for wide rows; others: one multi-row INSERT."""
    if not face_rows:
        return []
    if session.get_bind().dialect.name != "postgresql":
        return list(session.execute(insert(Face).returning(Face.id, sort_by_parameter_order=True), face_rows).scalars())
    driver = session.connection().connection.driver_connection
    statement = f"COPY faces ({', '.join(_COPY_COLUMNS)}) FROM STDIN"
    with driver.cursor() as cursor, cursor.copy(statement) as copy:  # type: ignore[union-attr]
        for row in face_rows:
            copy.write_row([json.dumps(row[c]) if c in ("box", "quality") else row[c] for c in _COPY_COLUMNS])
    hashes = [row["image_sha256"] for row in face_rows]
    found = session.execute(
        select(Face.image_sha256, Face.id).where(Face.gallery_id == gallery_id, Face.image_sha256.in_(hashes))
    )
    ids = {sha256: face_id for sha256, face_id in found}
    return [int(ids[h]) for h in hashes]
