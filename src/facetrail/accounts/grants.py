"""Separation of duties for accounts: no single person can make the reviewers who release leads.

Guaranteed:
- administrators hold neither search nor review permissions (policy.roles), and nobody changes their own role;
- the last active administrator cannot be demoted or disabled;
- granting a PRIVILEGED role (reviewer, administrator), by creating an account with it or by changing a
  user's role to it, is a role grant (table ``role_grants``), never immediate:
  * with another active administrator, it waits for that administrator's approval (not the requester's, not
    the grantee's);
  * where the requester is the only administrator, it takes effect only after ``governance.role_grant_delay_hours``
    (a setting), during which every reviewer and auditor sees it (GET /api/v1/role-grants, the web UI's banner);
  until then a new account stays disabled and an existing user keeps their old role; any administrator may
  cancel a pending grant;
- every request, approval, cancellation and coming into effect is audited ('role.grant.*'), refusals too, and
  the transparency report lists the grants of its period.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import ForeignKey, Integer, String, Text, func, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from facetrail.audit.log import append_audit
from facetrail.audit.refusals import audit_refusal
from facetrail.context import AppContext
from facetrail.errors import BadInputError, FaceTrailError, PermissionDeniedError
from facetrail.policy.roles import Permission, Role
from facetrail.storage.models import Base, User, WebSession, utcnow

PRIVILEGED = frozenset({Role.REVIEWER.value, Role.ADMINISTRATOR.value})
PENDING, EFFECTIVE, CANCELLED = "pending", "effective", "cancelled"
APPROVAL, DELAY = "second_administrator", "delay"
SYSTEM = "system"


class RoleGrant(Base):
    """A pending or past grant of a privileged role (migration 0014)."""

    __tablename__ = "role_grants"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(40))
    previous_role: Mapped[str | None] = mapped_column(String(40))  # None: a new account
    status: Mapped[str] = mapped_column(String(20), index=True)  # pending | effective | cancelled
    path: Mapped[str] = mapped_column(String(40))  # second_administrator | delay
    requested_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    requested_by: Mapped[str] = mapped_column(String(200))
    requested_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    effective_after: Mapped[dt.datetime | None] = mapped_column()  # the delay path only
    decided_by: Mapped[str | None] = mapped_column(String(200))  # approver, canceller, or 'system' (the delay)
    decided_at: Mapped[dt.datetime | None] = mapped_column()
    reason: Mapped[str] = mapped_column(Text, default="")


class SeparationOfDutiesError(PermissionDeniedError):
    """The change would let one person hold powers that need two (stable code: separation_of_duties)."""

    code = "separation_of_duties"


class GrantNotFoundError(BadInputError):
    code = "grant_not_found"
    http_status = 404


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def active_administrators(s: Session, *, excluding: set[int | None] | frozenset[int | None] = frozenset()) -> int:
    query = (
        select(func.count()).select_from(User).where(User.role == Role.ADMINISTRATOR.value, User.disabled.is_(False))
    )
    ids = [i for i in excluding if i is not None]
    if ids:
        query = query.where(User.id.not_in(ids))
    return int(s.execute(query).scalar_one())


def check_role_change(s: Session, by_user_id: int | None, user: User, new_role: str) -> None:
    """Refuse changing one's own role and demoting the last active administrator."""
    if user.id == by_user_id:
        raise SeparationOfDutiesError("nobody changes their own role (another administrator must)")
    demoted = user.role == Role.ADMINISTRATOR.value and new_role != Role.ADMINISTRATOR.value and not user.disabled
    if demoted and active_administrators(s, excluding={user.id}) == 0:
        raise SeparationOfDutiesError("the last active administrator cannot be demoted")


def check_disable(s: Session, user: User) -> None:
    """Refuse disabling the last active administrator."""
    is_admin = user.role == Role.ADMINISTRATOR.value and not user.disabled
    if is_admin and active_administrators(s, excluding={user.id}) == 0:
        raise SeparationOfDutiesError("the last active administrator cannot be disabled")


def check_enable(s: Session, user: User) -> None:
    """Refuse enabling an account whose role grant is still pending (it is enabled when the grant takes effect)."""
    pending = s.execute(
        select(RoleGrant.id).where(
            RoleGrant.user_id == user.id, RoleGrant.status == PENDING, RoleGrant.previous_role.is_(None)
        )
    ).first()
    if pending is not None:
        raise SeparationOfDutiesError(
            f"user {user.username!r} waits for role grant {pending[0]}: the account is enabled when it takes effect"
        )


def request_grant(
    ctx: AppContext, s: Session, by_user_id: int | None, by_actor: str, user: User, role: str, *, new_account: bool
) -> RoleGrant:
    """Record a pending grant of ``role`` to ``user`` (who keeps the old role, or stays disabled if new), or
    make it effective at once when the delay path's delay is zero (test configurations)."""
    others = active_administrators(s, excluding={by_user_id, user.id})
    now = utcnow()
    delay = dt.timedelta(hours=ctx.settings.governance.role_grant_delay_hours)
    for stale in s.execute(
        select(RoleGrant).where(RoleGrant.user_id == user.id, RoleGrant.status == PENDING)
    ).scalars():
        stale.status, stale.decided_by, stale.decided_at, stale.reason = CANCELLED, by_actor, now, "superseded"
    grant = RoleGrant(
        user_id=user.id,
        role=role,
        previous_role=None if new_account else user.role,
        status=PENDING,
        path=APPROVAL if others else DELAY,
        requested_by_id=by_user_id,
        requested_by=by_actor,
        requested_at=now,
        effective_after=None if others else now + delay,
    )
    s.add(grant)
    s.flush()
    append_audit(
        s,
        actor=by_actor,
        action="role.grant.request",
        target=f"user:{user.username}",
        details={
            "grant_id": grant.id,
            "role": role,
            "previous_role": grant.previous_role,
            "path": grant.path,
            "effective_after": grant.effective_after.isoformat() if grant.effective_after else None,
        },
    )
    if grant.path == DELAY and delay <= dt.timedelta(0):
        _make_effective(s, grant, SYSTEM)
    return grant


def _make_effective(s: Session, grant: RoleGrant, by_actor: str) -> None:
    user = s.get(User, grant.user_id)
    assert user is not None
    user.role = grant.role
    if grant.previous_role is None:
        user.disabled = False
    grant.status, grant.decided_by, grant.decided_at = EFFECTIVE, by_actor, utcnow()
    for ws in s.execute(
        select(WebSession).where(WebSession.user_id == user.id, WebSession.ended_at.is_(None))
    ).scalars():
        ws.ended_at = utcnow()  # the new role applies from the next sign-in
    s.flush()
    append_audit(
        s,
        actor=by_actor,
        action="role.grant.effective",
        target=f"user:{user.username}",
        details={"grant_id": grant.id, "role": grant.role, "path": grant.path, "requested_by": grant.requested_by},
    )


def apply_due(ctx: AppContext) -> int:
    """Make effective every delay-path grant whose delay has passed (called on every sign-in and request)."""
    now = utcnow()
    with ctx.db.read() as s:
        due = [
            g.id
            for g in s.execute(
                select(RoleGrant).where(RoleGrant.status == PENDING, RoleGrant.effective_after.is_not(None))
            ).scalars()
            if g.effective_after is not None and _aware(g.effective_after) <= now
        ]
    for grant_id in due:
        with ctx.db.transaction() as s:
            grant = s.get(RoleGrant, grant_id)
            if grant is not None and grant.status == PENDING:
                _make_effective(s, grant, SYSTEM)
    return len(due)


def _refused(ctx: AppContext, who: Any, action: str, target: str, error: FaceTrailError) -> None:
    audit_refusal(ctx, who, action, target, error)  # the one refusal gate


def approve_grant(ctx: AppContext, who: Any, grant_id: int) -> dict[str, Any]:
    """A second administrator approves a pending grant: it takes effect now. Never the requester or grantee."""
    target = f"grant:{grant_id}"
    try:
        who.require(Permission.USERS_MANAGE)
        with ctx.db.transaction() as s:
            grant = s.get(RoleGrant, grant_id)
            if grant is None:
                raise GrantNotFoundError(f"no role grant {grant_id}")
            if grant.status != PENDING:
                raise BadInputError(f"role grant {grant_id} is already {grant.status}", field="grant")
            if who.user_id in (grant.requested_by_id, grant.user_id):
                raise SeparationOfDutiesError("a role grant is approved by another administrator than its requester")
            append_audit(
                s,
                actor=who.actor,
                action="role.grant.approve",
                target=target,
                details={"grant_id": grant_id, "role": grant.role, **who.audit_context()},
            )
            _make_effective(s, grant, who.actor)
            return grant_dict(s, grant)
    except (BadInputError, PermissionDeniedError) as exc:
        _refused(ctx, who, "role.grant.approve", target, exc)
        raise


def cancel_grant(ctx: AppContext, who: Any, grant_id: int, reason: str = "") -> dict[str, Any]:
    """Any administrator cancels a pending grant (the account, if new, stays disabled)."""
    from facetrail.text import check_text

    target = f"grant:{grant_id}"
    try:
        who.require(Permission.USERS_MANAGE)
        text = check_text("reason", reason, max_len=2000, required=False, multiline=True)
        with ctx.db.transaction() as s:
            grant = s.get(RoleGrant, grant_id)
            if grant is None:
                raise GrantNotFoundError(f"no role grant {grant_id}")
            if grant.status != PENDING:
                raise BadInputError(f"role grant {grant_id} is already {grant.status}", field="grant")
            grant.status, grant.decided_by, grant.decided_at, grant.reason = CANCELLED, who.actor, utcnow(), text
            s.flush()
            append_audit(
                s,
                actor=who.actor,
                action="role.grant.cancel",
                target=target,
                details={"grant_id": grant_id, "role": grant.role, "reason": text, **who.audit_context()},
            )
            return grant_dict(s, grant)
    except (BadInputError, PermissionDeniedError) as exc:
        _refused(ctx, who, "role.grant.cancel", target, exc)
        raise


def grant_dict(s: Session, grant: RoleGrant) -> dict[str, Any]:
    user = s.get(User, grant.user_id)
    return {
        "id": grant.id,
        "username": user.username if user else None,
        "role": grant.role,
        "previous_role": grant.previous_role,
        "status": grant.status,
        "path": grant.path,
        "requested_by": grant.requested_by,
        "requested_at": _aware(grant.requested_at),
        "effective_after": _aware(grant.effective_after) if grant.effective_after else None,
        "decided_by": grant.decided_by,
        "decided_at": _aware(grant.decided_at) if grant.decided_at else None,
        "reason": grant.reason,
    }


def list_grants(ctx: AppContext, who: Any, *, pending_only: bool = False) -> list[dict[str, Any]]:
    """Reviewers, auditors and administrators see every grant (pending first); others are refused (audited)."""
    if not who.can(Permission.ROLE_GRANTS_VIEW):
        error = PermissionDeniedError(f"role '{who.role}' may not view role grants")
        _refused(ctx, who, "role.grant.list", "role-grants", error)
        raise error
    apply_due(ctx)
    query = select(RoleGrant).order_by(RoleGrant.id.desc())
    if pending_only:
        query = query.where(RoleGrant.status == PENDING)
    with ctx.db.read() as s:
        rows = list(s.execute(query.limit(500)).scalars())
        out = [grant_dict(s, g) for g in rows]
    return sorted(out, key=lambda g: (g["status"] != PENDING, -g["id"]))


def grants_between(s: Session, start: dt.datetime, end: dt.datetime) -> list[dict[str, Any]]:
    """Grants requested or decided in [start, end): the transparency report's list."""
    rows = s.execute(select(RoleGrant).order_by(RoleGrant.id)).scalars()
    out = []
    for g in rows:
        requested = _aware(g.requested_at)
        decided = _aware(g.decided_at) if g.decided_at else None
        if start <= requested < end or (decided is not None and start <= decided < end):
            out.append(grant_dict(s, g))
    return out
