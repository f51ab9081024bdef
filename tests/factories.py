"""Shared test factories: units, users (as principals), galleries, search requests and searches, and the audit
records of an action, written straight to a real database (no HTTP, no password hashing) for the storage
tests. Each returns what the tests then act with."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy import select

from facetrail.accounts.service import principal_for
from facetrail.cases.probe import SearchRequest
from facetrail.context import AppContext
from facetrail.gallery.search import search_gallery
from facetrail.gallery.service import create_gallery
from facetrail.policy.principal import Principal
from facetrail.storage.models import AuditRecord, Unit, User

CASE = "2026-0042"
JUSTIFICATION = "armed robbery, store camera still"


def make_unit(ctx: AppContext, name: str) -> int:
    with ctx.db.transaction() as s:
        unit = Unit(name=name)
        s.add(unit)
        s.flush()
        return unit.id


def make_user(
    ctx: AppContext, username: str, role: str, unit_id: int | None = None, *, display_name: str = ""
) -> Principal:
    """A user who has already changed their password (the hash is a placeholder: they never sign in)."""
    with ctx.db.transaction() as s:
        user = User(
            username=username,
            display_name=display_name,
            role=role,
            unit_id=unit_id,
            password_hash="x",
            must_change_password=False,
            created_by="test",
        )
        s.add(user)
        s.flush()
        s.refresh(user, ["unit"])
        return principal_for(user, "session")


def make_gallery(ctx: AppContext, name: str = "bookings") -> str:
    create_gallery(ctx, name, ctx.pipeline.model_id)
    return name


def search_request(**fields: Any) -> SearchRequest:
    """A well-formed request for case 2026-0042 in 'bookings'; ``fields`` override any part."""
    base: dict[str, Any] = {
        "gallery": "bookings",
        "case_number": CASE,
        "offense": "robbery",
        "legal_basis": "warrant",
        "justification": JUSTIFICATION,
        "candidates": 4,
    }
    return SearchRequest(**{**base, **fields})


def make_search(
    ctx: AppContext,
    who: Principal,
    probe: Path,
    gallery: str,
    case: str,
    offense: str,
    legal_basis: str = "warrant",
    candidates: int = 4,
) -> int:
    """A recorded search by ``who`` through the search core (no governance gate): its id."""
    return search_gallery(
        ctx,
        probe,
        gallery=gallery,
        case_number=case,
        offense=offense,
        reason=f"test search of {probe.name}",
        actor=who.actor,
        candidates=candidates,
        write_thumbnails=False,
        user_id=who.user_id,
        unit_id=who.unit_id,
        legal_basis=legal_basis,
    ).search_id


def audits(ctx: AppContext, action: str, outcome: str | None = None) -> list[dict[str, Any]]:
    """The records of ``action`` (and ``outcome``), oldest first: actor, outcome, target, seq and the details."""
    with ctx.db.read() as s:
        query = select(AuditRecord).where(AuditRecord.action == action)
        if outcome:
            query = query.where(AuditRecord.outcome == outcome)
        return [
            {"actor": r.actor, "outcome": r.outcome, "target": r.target, "seq": r.seq, **json.loads(r.details)}
            for r in s.execute(query.order_by(AuditRecord.seq)).scalars()
        ]
