"""Legal holds: a subject or a case kept, whatever the retention rules say, until the hold is lifted.

A held subject is never deleted, by retention or by hand (the refusal is audited); a held case's stored
probe images are kept. Placing and lifting a hold are audited and need a reason.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from facetrail.audit.log import append_audit
from facetrail.context import AppContext
from facetrail.errors import BadInputError, ConflictError, NotFoundError
from facetrail.gallery.service import load_gallery, load_subject
from facetrail.retention.models import LegalHold
from facetrail.storage.models import Gallery, Subject
from facetrail.text import check_text


class LegalHoldError(ConflictError):
    """Deleting what a legal hold protects."""

    code = "legal_hold"
    http_status = 409


class HoldNotFoundError(NotFoundError):
    code = "hold_not_found"


def _text(field: str, value: str, limit: int) -> str:
    return check_text(field, value, max_len=limit, multiline=True)


def hold_dict(hold: LegalHold, gallery_name: str | None = None) -> dict[str, Any]:
    return {
        "id": hold.id,
        "kind": hold.kind,
        "gallery": gallery_name,
        "external_id": hold.external_id,
        "case_number": hold.case_number,
        "reason": hold.reason,
        "created_at": hold.created_at.isoformat(),
        "created_by": hold.created_by,
        "active": hold.lifted_at is None,
        "lifted_at": hold.lifted_at.isoformat() if hold.lifted_at else None,
        "lifted_by": hold.lifted_by,
        "lift_reason": hold.lift_reason,
    }


def lock_subject(session: Session, subject: Subject) -> None:
    """Row-lock the subject (PostgreSQL; SQLite writers are serialised anyway): placing a hold and deleting
    the subject then happen one after the other, never interleaved."""
    session.execute(select(Subject.id).where(Subject.id == subject.id).with_for_update())


def add_hold(
    ctx: AppContext, *, actor: str, reason: str, subject: tuple[str, str] | None = None, case_number: str | None = None
) -> dict[str, Any]:
    """Hold one subject (gallery name, external id) or one case number; audited 'legal_hold.add'."""
    if (subject is None) == (case_number is None):
        raise BadInputError("name exactly one of a subject (GALLERY:EXTERNAL_ID) or a case number", field="target")
    reason = _text("reason", reason, 10_000)
    with ctx.db.transaction() as session:
        if subject is not None:
            gallery = load_gallery(session, subject[0])
            found = load_subject(session, gallery, subject[1])
            lock_subject(session, found)
            hold = LegalHold(
                kind="subject", gallery_id=gallery.id, external_id=found.external_id, reason=reason, created_by=actor
            )
            target, gallery_name = f"subject:{gallery.name}:{found.external_id}", gallery.name
        else:
            case = _text("case number", case_number or "", 100)
            hold = LegalHold(kind="case", case_number=case, reason=reason, created_by=actor)
            target, gallery_name = f"case:{case}", None
        session.add(hold)
        session.flush()
        out = hold_dict(hold, gallery_name)
        append_audit(session, actor=actor, action="legal_hold.add", target=target, details=out)
    return out


def list_holds(ctx: AppContext, *, include_lifted: bool = False) -> list[dict[str, Any]]:
    with ctx.db.read() as session:
        query = select(LegalHold, Gallery.name).outerjoin(Gallery, Gallery.id == LegalHold.gallery_id)
        if not include_lifted:
            query = query.where(LegalHold.lifted_at.is_(None))
        return [hold_dict(h, g) for h, g in session.execute(query.order_by(LegalHold.id)).all()]


def lift_hold(ctx: AppContext, hold_id: int, *, actor: str, reason: str) -> dict[str, Any]:
    reason = _text("reason", reason, 10_000)
    with ctx.db.transaction() as session:
        hold = session.get(LegalHold, hold_id, with_for_update=True)
        if hold is None:
            raise HoldNotFoundError(f"no legal hold {hold_id}", hold_id=hold_id)
        if hold.lifted_at is not None:
            raise ConflictError(f"legal hold {hold_id} was already lifted", hold_id=hold_id)
        hold.lifted_at, hold.lifted_by, hold.lift_reason = dt.datetime.now(dt.UTC), actor, reason
        gallery = session.get(Gallery, hold.gallery_id) if hold.gallery_id is not None else None
        out = hold_dict(hold, gallery.name if gallery else None)
        target = f"case:{hold.case_number}" if hold.kind == "case" else f"subject:{out['gallery']}:{hold.external_id}"
        append_audit(session, actor=actor, action="legal_hold.lift", target=target, details=out)
    return out


def subject_hold_ids(session: Session, gallery_id: int, external_id: str) -> list[int]:
    """Active holds on this subject."""
    return list(
        session.execute(
            select(LegalHold.id)
            .where(
                LegalHold.kind == "subject",
                LegalHold.gallery_id == gallery_id,
                LegalHold.external_id == external_id,
                LegalHold.lifted_at.is_(None),
            )
            .order_by(LegalHold.id)
        ).scalars()
    )


def held_subjects(session: Session, gallery_id: int) -> dict[str, list[int]]:
    """external id -> active hold ids, for the gallery's held subjects."""
    out: dict[str, list[int]] = {}
    for hold_id, external_id in session.execute(
        select(LegalHold.id, LegalHold.external_id).where(
            LegalHold.kind == "subject", LegalHold.gallery_id == gallery_id, LegalHold.lifted_at.is_(None)
        )
    ):
        out.setdefault(str(external_id), []).append(int(hold_id))
    return out


def held_cases(session: Session) -> set[str]:
    return {
        str(c)
        for c in session.execute(
            select(LegalHold.case_number).where(LegalHold.kind == "case", LegalHold.lifted_at.is_(None))
        ).scalars()
    }
