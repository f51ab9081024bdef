"""The training gate: nobody runs a search until an administrator has recorded their search training, and
the training lapses after the policy's validity period (training.validity_days)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from facetrail.audit.log import append_audit
from facetrail.context import AppContext
from facetrail.errors import BadInputError, FaceTrailError, NotFoundError
from facetrail.governance.models import TrainingRecord
from facetrail.governance.policy import active_policy
from facetrail.policy.principal import Principal
from facetrail.storage.models import User
from facetrail.text import check_text

MAX_COURSE = 200


class TrainingRequiredError(FaceTrailError):
    """The user has no valid search training on record."""

    code = "training_required"
    http_status = 403
    exit_code = 6


def _today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


def latest_training(session: Session, user_id: int) -> TrainingRecord | None:
    return session.execute(
        select(TrainingRecord)
        .where(TrainingRecord.user_id == user_id)
        .order_by(TrainingRecord.completed_on.desc(), TrainingRecord.id.desc())
        .limit(1)
    ).scalar_one_or_none()


def valid_until(completed_on: dt.date, validity_days: int) -> dt.date:
    """The last day the training counts."""
    return completed_on + dt.timedelta(days=validity_days)


def record_training(
    ctx: AppContext,
    username: str,
    completed_on: dt.date,
    course: str,
    *,
    actor: str,
    audit_context: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Record that ``username`` completed search training on ``completed_on`` (audited 'training.record')."""
    course = check_text("course", course, max_len=MAX_COURSE)
    if completed_on > _today():
        raise BadInputError("the completion date is in the future", field="date")
    validity = active_policy(ctx).training.validity_days
    with ctx.db.transaction() as s:
        user = s.execute(select(User).where(User.username == username)).scalar_one_or_none()
        if user is None:
            raise NotFoundError(f"no user {username!r}")
        row = TrainingRecord(user_id=user.id, completed_on=completed_on, course=course, recorded_by=actor)
        s.add(row)
        s.flush()
        append_audit(
            s,
            actor=actor,
            action="training.record",
            target=f"user:{username}",
            details={
                "completed_on": completed_on.isoformat(),
                "course": course,
                "valid_until": valid_until(completed_on, validity).isoformat(),
                **(audit_context or {}),
            },
        )
        return training_dict(row, username, validity)


def training_dict(row: TrainingRecord, username: str, validity_days: int) -> dict[str, Any]:
    until = valid_until(row.completed_on, validity_days)
    return {
        "username": username,
        "completed_on": row.completed_on,
        "course": row.course,
        "recorded_by": row.recorded_by,
        "valid_until": until,
        "valid": until >= _today(),
    }


def training_status(ctx: AppContext, username: str) -> dict[str, Any] | None:
    """The user's newest training and whether it is valid today; None when none is recorded."""
    validity = active_policy(ctx).training.validity_days
    with ctx.db.read() as s:
        user = s.execute(select(User).where(User.username == username)).scalar_one_or_none()
        if user is None:
            raise NotFoundError(f"no user {username!r}")
        row = latest_training(s, user.id)
        return training_dict(row, username, validity) if row else None


def require_training(ctx: AppContext, who: Principal) -> None:
    """Raise TrainingRequiredError unless the caller's training is valid today. The caller audits the refusal
    (it is part of the refused search's audit record)."""
    validity = active_policy(ctx).training.validity_days
    completed_on = None
    if who.user_id is not None:
        with ctx.db.read() as s:
            row = latest_training(s, who.user_id)
            completed_on = row.completed_on if row else None
    if completed_on is None:
        raise TrainingRequiredError(
            f"{who.username} has no search training on record; an administrator must record it before they can search"
        )
    until = valid_until(completed_on, validity)
    if until < _today():
        raise TrainingRequiredError(
            f"{who.username}'s search training expired on {until.isoformat()}", expired_on=until.isoformat()
        )


def trained_user_ids(session: Session, at: dt.datetime, validity_days: int) -> dict[int, bool]:
    """Whose training is valid on the day ``at`` falls on, by user id (every user with a record)."""
    day = at.date()
    out: dict[int, bool] = {}
    for row in session.execute(select(TrainingRecord).where(TrainingRecord.completed_on <= day)).scalars():
        ok = valid_until(row.completed_on, validity_days) >= day
        out[row.user_id] = out.get(row.user_id, False) or ok
    return out
