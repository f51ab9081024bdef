"""Verifiable deletion: remove a subject's (or some faces') rows, vectors, thumbnails and images, make sure no
copy of their bytes is left in the storage FaceTrail controls, and issue a deletion certificate.

Order of work (docs/retention.md has the guarantee per backend):
1. One transaction: lock the subject, refuse if a legal hold is in force (the refusal is audited in its own
   transaction), delete the face rows (and the subject), audit 'subject.delete' / 'face.delete'. SQLite
   connections run with ``secure_delete`` on, so the freed pages are overwritten with zeros.
2. Remove the vectors from the gallery index and save it at once (index files are rewritten whole).
3. Remove the original images no other face refers to (waiting for a running enrolment to finish).
4. Purge the database's own copies: SQLite checkpoints and truncates its WAL; PostgreSQL runs VACUUM FULL on
   the face tables (plain VACUUM leaves dead tuples' bytes in the pages).
5. Audit a 'deletion.certificate': what was deleted (face ids, counts, SHA-256 of each image, embedding and
   thumbnail), when, why and by whom, and what was done to the storage. Never the bytes themselves.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from facetrail.audit.log import append_audit
from facetrail.audit.refusals import refuse
from facetrail.context import AppContext
from facetrail.examination.enhanced_images import remove_derived
from facetrail.gallery.index_sync import flush_indexes, remove_faces
from facetrail.gallery.service import (
    FaceNotFoundError,
    image_store,
    load_gallery,
    load_subject,
)
from facetrail.policy.principal import Principal
from facetrail.policy.roles import Permission
from facetrail.retention.holds import LegalHoldError, lock_subject, subject_hold_ids
from facetrail.storage.models import Face

log = logging.getLogger(__name__)

CERTIFICATE_ACTION = "deletion.certificate"
CERTIFICATE_FORMAT = 1
IMAGE_LOCK_WAIT_S = 120.0  # an enrolment run holds the image store; deletion waits for it this long


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class PendingCertificate:
    """A committed deletion whose certificate is written once its storage has been purged."""

    scope: str  # subject | faces | probes
    gallery: str | None
    gallery_id: int | None
    external_id: str | None
    actor: str
    reason: str
    basis: dict[str, Any]
    deleted_at: str
    faces: list[dict[str, Any]] = field(default_factory=list)
    probes: list[dict[str, Any]] = field(default_factory=list)
    index_entries_removed: int = 0
    images_removed: list[str] = field(default_factory=list)
    images_still_referenced: list[str] = field(default_factory=list)
    images_pending: list[str] = field(default_factory=list)
    # enhanced copies of the deleted originals (examination.enhancements): removed with them
    derived_images_removed: list[str] = field(default_factory=list)

    def details(self, storage: dict[str, Any]) -> dict[str, Any]:
        return {
            "format": CERTIFICATE_FORMAT,
            "scope": self.scope,
            "gallery": self.gallery,
            "gallery_id": self.gallery_id,
            "external_id": self.external_id,
            "deleted_at": self.deleted_at,
            "deleted_by": self.actor,
            "reason": self.reason,
            "basis": self.basis,
            "counts": {
                "faces": len(self.faces),
                "embeddings": len(self.faces),
                "thumbnails": len(self.faces),
                "index_entries": self.index_entries_removed,
                "images_removed": len(self.images_removed),
                "images_kept_other_reference": len(self.images_still_referenced),
                "images_pending": len(self.images_pending),
                "probe_images": len(self.probes),
                "derived_images_removed": len(self.derived_images_removed),
            },
            "face_ids": [f["face_id"] for f in self.faces],
            "faces": self.faces,
            "probes": self.probes,
            "images_removed": self.images_removed,
            "images_kept_other_reference": self.images_still_referenced,
            "images_pending": self.images_pending,
            "derived_images_removed": self.derived_images_removed,
            "storage": storage,
        }


def delete_rows(
    ctx: AppContext,
    gallery_name: str,
    external_id: str | None,
    *,
    face_ids: Sequence[int] | None,
    actor: str,
    reason: str,
    basis: dict[str, Any] | None = None,
) -> PendingCertificate:
    """Steps 1–3 for a whole subject (``face_ids`` None) or some of its faces (``external_id`` may then be
    None: it is looked up from the first face). Raises LegalHoldError if the subject is held."""
    whole = face_ids is None
    action = "subject.delete" if whole else "face.delete"
    refused: list[int] = []
    with ctx.db.transaction() as session:
        _secure_delete(session)
        gallery = load_gallery(session, gallery_name)
        if external_id is None:
            first = session.get(Face, face_ids[0]) if face_ids else None
            if first is None or first.gallery_id != gallery.id:
                missing = face_ids[0] if face_ids else None
                raise FaceNotFoundError(
                    f"gallery {gallery.name!r} has no face {missing}", gallery=gallery.name, face_id=missing
                )
            external_id = first.subject.external_id
        subject = load_subject(session, gallery, external_id)
        lock_subject(session, subject)
        refused = subject_hold_ids(session, gallery.id, external_id)
        if not refused:
            query = select(Face).where(Face.subject_id == subject.id).order_by(Face.id)
            if face_ids is not None:
                query = query.where(Face.id.in_(list(face_ids)))
            faces = list(session.execute(query).scalars())
            if face_ids is not None and len(faces) != len(set(face_ids)):
                missing = sorted(set(face_ids) - {f.id for f in faces})[0]
                raise FaceNotFoundError(
                    f"gallery {gallery.name!r} has no face {missing}", gallery=gallery.name, face_id=missing
                )
            pending = PendingCertificate(
                scope="subject" if whole else "faces",
                gallery=gallery.name,
                gallery_id=gallery.id,
                external_id=external_id,
                actor=actor,
                reason=reason,
                basis=basis or {"kind": "manual"},
                deleted_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                faces=[
                    {
                        "face_id": f.id,
                        "image_sha256": f.image_sha256,
                        "image_stored": f.image_stored,
                        "embedding_sha256": sha256_hex(f.embedding),
                        "thumbnail_sha256": sha256_hex(f.thumbnail),
                        "capture_date": f.capture_date.isoformat() if f.capture_date else None,
                        "enrolled_at": f.enrolled_at.isoformat(),
                    }
                    for f in faces
                ],
            )
            for face in faces:
                session.delete(face)
            if whole:
                session.delete(subject)
            session.flush()
            ids = [f["face_id"] for f in pending.faces]
            if whole:
                details: dict[str, Any] = {
                    "gallery_id": gallery.id,
                    "external_id": external_id,
                    "face_ids": ids,
                    "reason": reason,
                }
            else:
                details = {
                    "gallery_id": gallery.id,
                    "external_id": external_id,
                    "face_ids": ids,
                    "face_id": ids[0] if len(ids) == 1 else None,
                    "image_sha256": pending.faces[0]["image_sha256"] if len(ids) == 1 else None,
                    "reason": reason,
                }
            append_audit(session, actor=actor, action=action, target=f"gallery:{gallery.name}", details=details)
    if refused:
        raise refuse(
            ctx,
            actor,
            action,
            f"gallery:{gallery_name}",
            LegalHoldError(
                f"subject {external_id!r} of gallery {gallery_name!r} is under legal hold "
                f"{', '.join(map(str, refused))}; lift the hold before deleting",
                gallery=gallery_name,
                subject=external_id,
                hold_ids=refused,
            ),
            details={
                "external_id": external_id,
                "face_id": None if whole or not face_ids else face_ids[0],
                "reason": reason,
                "refused_because": "legal hold",
                "hold_ids": refused,
            },
        )
    _remove_copies(ctx, pending)
    return pending


def _secure_delete(session: Session) -> None:
    # Every SQLite connection has it on (storage.db); set again here so deletion never depends on that alone.
    if session.get_bind().dialect.name == "sqlite":
        session.execute(select(1))  # begin the transaction before the pragma
        session.connection().exec_driver_sql("PRAGMA secure_delete=ON")


def _remove_copies(ctx: AppContext, pending: PendingCertificate) -> None:
    ids = [f["face_id"] for f in pending.faces]
    if ids and pending.gallery_id is not None:
        remove_faces(ctx, pending.gallery_id, ids)
        flush_indexes(ctx)  # large indexes save lazily; a deletion is written out now
        pending.index_entries_removed = len(ids)
    hashes = sorted({f["image_sha256"] for f in pending.faces if f["image_stored"]})
    if not hashes:
        return
    store = image_store(ctx)
    deadline = time.monotonic() + IMAGE_LOCK_WAIT_S
    while True:
        with store.exclusive_lock_if_free() as locked:
            if locked:
                with ctx.db.read() as session:
                    still_used = set(
                        session.execute(
                            select(Face.image_sha256).where(Face.image_sha256.in_(hashes), Face.image_stored.is_(True))
                        ).scalars()
                    )
                for sha in hashes:
                    if sha in still_used:
                        pending.images_still_referenced.append(sha)
                    else:
                        store.remove(sha)
                        pending.images_removed.append(sha)
                removed = [sha for sha in hashes if sha not in still_used]
                pending.derived_images_removed = remove_derived(ctx, removed)
                return
        if time.monotonic() >= deadline:  # the next sweep removes them; the certificate says so
            log.warning("image store busy: %d image(s) left for the next sweep", len(hashes))
            pending.images_pending = hashes
            return
        time.sleep(0.5)


def purge_storage(ctx: AppContext, *, compact: bool = False) -> dict[str, Any]:
    """Remove the database's remaining copies of deleted bytes (see the module docstring), and say what was done."""
    if ctx.db.is_sqlite:
        return _purge_sqlite(ctx, compact)
    return _purge_postgres(ctx, full=compact or ctx.settings.retention.postgres_vacuum_full)


def _purge_sqlite(ctx: AppContext, compact: bool) -> dict[str, Any]:
    raw = ctx.db.engine.raw_connection()
    try:
        cursor = raw.cursor()
        if compact:
            cursor.execute("VACUUM")
        busy = 1
        for _ in range(20):  # readers in flight keep old WAL frames; wait for them briefly
            busy, _log, _done = cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            if not busy:
                break
            time.sleep(0.25)
        secure = cursor.execute("PRAGMA secure_delete").fetchone()[0]
        cursor.close()
    finally:
        raw.close()
    return {"backend": "sqlite", "secure_delete": bool(secure), "wal_truncated": not busy, "vacuum": compact}


FACE_TABLES = ("faces", "subjects", "subject_dispositions")


def _purge_postgres(ctx: AppContext, full: bool) -> dict[str, Any]:
    # VACUUM keeps a deleted row that a transaction older than the deletion may still see (e.g. an ANALYZE that
    # autovacuum started meanwhile), so first wait, briefly, for such transactions to end; if one was still
    # open while vacuuming, wait and vacuum once more.
    started = dt.datetime.now(dt.UTC)
    # the PostgreSQL image store's rows hold deleted images' bytes too (cluster.image_store)
    tables = FACE_TABLES + (("stored_images",) if ctx.settings.cluster.image_store == "postgres" else ())
    older = -1
    passes = 0  # how many VACUUM rounds ran
    with ctx.db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:

        def older_snapshots() -> int:
            return int(
                conn.exec_driver_sql(
                    # A snapshot (backend_xmin) or a running write (backend_xid: it may hold no snapshot between
                    # statements) that began before the deletion can keep the deleted rows alive for VACUUM. Observed:
                    # transactions in *other* databases of the server too, so every database is considered.
                    "SELECT count(*) FROM pg_stat_activity WHERE pid <> pg_backend_pid() "
                    "AND (backend_xmin IS NOT NULL OR backend_xid IS NOT NULL) AND xact_start < %(t)s",
                    {"t": started},
                ).scalar_one()
            )

        while passes < 2:
            passes += 1
            for _ in range(120):
                older = older_snapshots()
                if not older:
                    break
                time.sleep(0.25)
            for table in tables:
                conn.exec_driver_sql(f"VACUUM {'FULL ' if full else ''}{table}")
            if older == 0 and older_snapshots() == 0:
                break
    return {
        "backend": "postgresql",
        "vacuum": "full" if full else "plain",
        "tables": list(tables),
        "older_snapshots_left": older,
        "vacuum_passes": passes,
    }


def issue_certificates(
    ctx: AppContext, pendings: Sequence[PendingCertificate], storage: dict[str, Any]
) -> list[dict[str, Any]]:
    """Write one 'deletion.certificate' audit record per deletion; returns them with their sequence numbers."""
    out = []
    for pending in pendings:
        details = pending.details(storage)
        target = f"gallery:{pending.gallery}" if pending.gallery else "probes"
        with ctx.db.transaction() as session:
            record = append_audit(
                session, actor=pending.actor, action=CERTIFICATE_ACTION, target=target, details=details
            )
            seq, digest = record.seq, record.hash
        out.append({"seq": seq, "hash": digest, **details})
    return out


def delete_verifiably(
    ctx: AppContext,
    gallery_name: str,
    external_id: str | None,
    *,
    face_ids: Sequence[int] | None,
    actor: str,
    reason: str,
    basis: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Delete, purge and certify at once (manual deletions); returns the certificate."""
    pending = delete_rows(ctx, gallery_name, external_id, face_ids=face_ids, actor=actor, reason=reason, basis=basis)
    return issue_certificates(ctx, [pending], purge_storage(ctx))[0]


def delete_enrolled(
    ctx: AppContext,
    gallery_name: str,
    *,
    external_id: str | None = None,
    face_id: int | None = None,
    actor: str,
    reason: str = "",
) -> dict[str, Any]:
    """A manual deletion: a whole subject (``external_id``) or one face (``face_id``; its subject stays, even
    with no face left), with its vectors and images, certified. Refused (audited) under a legal hold."""
    if (external_id is None) == (face_id is None):
        raise ValueError("name either a subject or a face")
    face_ids = None if face_id is None else [face_id]
    certificate = delete_verifiably(ctx, gallery_name, external_id, face_ids=face_ids, actor=actor, reason=reason)
    deleted = {
        "gallery": gallery_name,
        "deleted_face_ids": certificate["face_ids"],
        "certificate_seq": certificate["seq"],
    }
    return deleted if face_id is not None else {**deleted, "external_id": external_id}


def delete_enrolled_as(
    ctx: AppContext,
    who: Principal,
    gallery_name: str,
    *,
    external_id: str | None = None,
    face_id: int | None = None,
    reason: str = "",
) -> dict[str, Any]:
    """``delete_enrolled`` for a signed-in user: gallery.manage only."""
    who.require(Permission.GALLERY_MANAGE)
    return delete_enrolled(ctx, gallery_name, external_id=external_id, face_id=face_id, actor=who.actor, reason=reason)


def delete_subject(
    ctx: AppContext, gallery_name: str, external_id: str, *, actor: str, reason: str = ""
) -> dict[str, Any]:
    return delete_enrolled(ctx, gallery_name, external_id=external_id, actor=actor, reason=reason)


def delete_face(ctx: AppContext, gallery_name: str, face_id: int, *, actor: str, reason: str = "") -> dict[str, Any]:
    return delete_enrolled(ctx, gallery_name, face_id=face_id, actor=actor, reason=reason)


def get_certificate(ctx: AppContext, seq: int) -> dict[str, Any]:
    import json

    from facetrail.errors import NotFoundError
    from facetrail.storage.models import AuditRecord

    with ctx.db.read() as session:
        record = session.get(AuditRecord, seq)
        if record is None or record.action != CERTIFICATE_ACTION:
            raise NotFoundError(f"audit record {seq} is not a deletion certificate", seq=seq)
        return {
            "seq": record.seq,
            "ts": record.ts,
            "actor": record.actor,
            "target": record.target,
            "hash": record.hash,
            "prev_hash": record.prev_hash,
            "details": json.loads(record.details),
        }
