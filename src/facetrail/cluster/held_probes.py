"""Probes held between the two steps of a web search, and searched faces for results pages: in the database.

Guarantees:
- Any server process may answer either step: nothing a later request needs stays in one process's memory.
- A held probe belongs to the user who uploaded it (another user's token finds nothing); only the SHA-256 of
  its token is stored, so reading the table gives no usable token.
- A held probe lives ``PENDING_SECONDS`` at most and is deleted when it is searched (or abandoned for a new
  upload beyond ``PENDING_PER_USER``); a searched face lives ``FACES_SECONDS``. Lookups never return an
  expired row, and ``purge_expired`` (called by every retention run) deletes them.
- Probe bytes are held only for the search they were uploaded for; whether a probe is kept after the search
  is the probe-image policy's decision, made by the search core.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select

from facetrail.context import AppContext
from facetrail.storage.cluster_models import LoginFailure, PendingProbeRow, SearchedFace
from facetrail.storage.models import utcnow

PENDING_SECONDS = 30 * 60
PENDING_PER_USER = 8
FACES_SECONDS = 60 * 60


@dataclass(frozen=True)
class HeldProbe:
    user_id: int | None
    data: bytes
    fields: dict[str, str]


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def hold(ctx: AppContext, user_id: int | None, data: bytes, fields: dict[str, str]) -> str:
    """Hold a probe; returns the token that names it (shown to its uploader only)."""
    token = secrets.token_urlsafe(24)
    now = utcnow()
    with ctx.db.transaction() as s:
        s.add(
            PendingProbeRow(
                token_hash=_hash(token),
                user_id=user_id,
                data=data,
                fields=dict(fields),
                created_at=now,
                expires_at=now + dt.timedelta(seconds=PENDING_SECONDS),
            )
        )
        s.flush()
        # a user abandoning uploads does not pile up probes: keep the newest few
        older = (
            s.execute(
                select(PendingProbeRow.token_hash)
                .where(PendingProbeRow.user_id == user_id)
                .order_by(PendingProbeRow.created_at.desc(), PendingProbeRow.token_hash)
                .offset(PENDING_PER_USER)
            )
            .scalars()
            .all()
        )
        if older:
            s.execute(delete(PendingProbeRow).where(PendingProbeRow.token_hash.in_(older)))
    return token


def peek(ctx: AppContext, token: str, user_id: int | None) -> HeldProbe | None:
    """The held probe if the token names one of this user's, unexpired; None otherwise."""
    if not token:
        return None
    with ctx.db.read() as s:
        row = s.get(PendingProbeRow, _hash(token))
        if row is None or row.user_id != user_id or _aware(row.expires_at) <= utcnow():
            return None
        return HeldProbe(row.user_id, bytes(row.data), {str(k): str(v) for k, v in row.fields.items()})


def take(ctx: AppContext, token: str, user_id: int | None) -> bool:
    """Delete the held probe (it was searched, or refused for good). True if there was one."""
    if not token:
        return False
    with ctx.db.transaction() as s:
        result: Any = s.execute(
            delete(PendingProbeRow).where(
                PendingProbeRow.token_hash == _hash(token), PendingProbeRow.user_id == user_id
            )
        )
        return bool(result.rowcount)


def remember_face(ctx: AppContext, search_id: int, jpeg: bytes) -> None:
    expires = utcnow() + dt.timedelta(seconds=FACES_SECONDS)
    with ctx.db.transaction() as s:
        row = s.get(SearchedFace, search_id)
        if row is None:
            s.add(SearchedFace(search_id=search_id, jpeg=jpeg, expires_at=expires))
        else:
            row.jpeg, row.expires_at = jpeg, expires


def searched_face(ctx: AppContext, search_id: int) -> bytes | None:
    with ctx.db.read() as s:
        row = s.get(SearchedFace, search_id)
        if row is None or _aware(row.expires_at) <= utcnow():
            return None
        return bytes(row.jpeg)


def purge_expired(ctx: AppContext, *, login_window_seconds: float) -> dict[str, int]:
    """Delete expired held probes and searched faces, and login failures older than the throttle's window."""
    now = utcnow()
    with ctx.db.transaction() as s:
        probes: Any = s.execute(delete(PendingProbeRow).where(PendingProbeRow.expires_at <= now))
        faces: Any = s.execute(delete(SearchedFace).where(SearchedFace.expires_at <= now))
        failures: Any = s.execute(
            delete(LoginFailure).where(LoginFailure.at < now - dt.timedelta(seconds=login_window_seconds))
        )
    return {
        "pending_probes": int(probes.rowcount or 0),
        "searched_faces": int(faces.rowcount or 0),
        "login_failures": int(failures.rowcount or 0),
    }
