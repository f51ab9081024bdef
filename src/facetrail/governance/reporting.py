"""Governance figures for the disclosure packet and the transparency report (their hooks call these)."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from facetrail.governance.approvals import APPROVED, DENIED, EMERGENCY, EXPIRED, PENDING, PRIOR, is_locked
from facetrail.governance.models import PolicyVersion, SearchApproval
from facetrail.governance.policy import parse_policy
from facetrail.governance.training import trained_user_ids
from facetrail.storage.models import Unit, User

NO_UNIT = "(no unit)"
EMERGENCY_OUTCOMES: dict[str, str] = {
    APPROVED: "approved after the fact",
    DENIED: "denied (results locked)",
    EXPIRED: "window passed (results locked)",
    PENDING: "awaiting approval",
}


def _iso(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).isoformat(timespec="seconds")


def _status(row: SearchApproval) -> str:
    return EXPIRED if row.status == PENDING and is_locked(row) else row.status


def approval_entry(session: Session, search_id: int, kind: str) -> dict[str, Any] | None:
    """The approval of one search of the given kind (prior | emergency), as the packet states it."""
    row = session.execute(
        select(SearchApproval).where(SearchApproval.search_id == search_id, SearchApproval.kind == kind)
    ).scalar_one_or_none()
    if row is None:
        return None
    names = dict(
        session.execute(
            select(User.id, User.username).where(
                User.id.in_([i for i in (row.requester_id, row.decided_by_id) if i is not None])
            )
        ).all()
    )
    entry: dict[str, Any] = {
        "request_id": row.id,
        "status": _status(row),
        "requested_by": names.get(row.requester_id),
        "requested_at": _iso(row.requested_at),
        "decided_by": names.get(row.decided_by_id) if row.decided_by_id else None,
        "decided_at": _iso(row.decided_at),
        "reason": row.decision_reason or None,
    }
    if kind == EMERGENCY:
        entry.update(
            deadline=_iso(row.deadline), results_locked=is_locked(row), outcome=EMERGENCY_OUTCOMES[_status(row)]
        )
    return entry


def _in_period(value: dt.datetime | None, low: dt.datetime, high: dt.datetime) -> bool:
    if value is None:
        return False
    aware = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    return low <= aware < high


def approval_counts(session: Session, low: dt.datetime, high: dt.datetime) -> list[list[Any]]:
    """Prior-approval requests decided in the period, by unit: [unit, approved, denied]."""
    units = {u.id: u.name for u in session.execute(select(Unit)).scalars()}
    counts: dict[str, list[int]] = {}
    for row in session.execute(
        select(SearchApproval).where(SearchApproval.kind == PRIOR, SearchApproval.status.in_([APPROVED, DENIED]))
    ).scalars():
        if not _in_period(row.decided_at, low, high):
            continue
        unit = units.get(row.unit_id, NO_UNIT) if row.unit_id is not None else NO_UNIT
        pair = counts.setdefault(unit, [0, 0])
        pair[0 if row.status == APPROVED else 1] += 1
    return [[unit, *pair] for unit, pair in sorted(counts.items())]


def emergency_counts(session: Session, low: dt.datetime, high: dt.datetime) -> list[list[Any]]:
    """Emergency searches run in the period, by outcome: [outcome, searches]."""
    counter: Counter[str] = Counter()
    for row in session.execute(
        select(SearchApproval).where(SearchApproval.kind == EMERGENCY, SearchApproval.search_id.is_not(None))
    ).scalars():
        if _in_period(row.requested_at, low, high):
            counter[EMERGENCY_OUTCOMES[_status(row)]] += 1
    return [[outcome, n] for outcome, n in sorted(counter.items())]


def trained_at(session: Session, at: dt.datetime) -> dict[int, bool]:
    """Whose training is valid at ``at`` under the policy in force then (the newest version applied before)."""
    row = session.execute(
        select(PolicyVersion).where(PolicyVersion.created_at < at).order_by(PolicyVersion.version.desc()).limit(1)
    ).scalar_one_or_none()
    if row is None:
        row = session.execute(select(PolicyVersion).order_by(PolicyVersion.version).limit(1)).scalar_one_or_none()
    validity = parse_policy(row.text).training.validity_days if row else 365
    return trained_user_ids(session, at - dt.timedelta(microseconds=1), validity)
