"""Browser sessions as their users and administrators see them: list, end.

Guarantees: a user sees and ends only their own sessions (another's session id reads as "not found"); an
administrator (users.manage) sees and ends anyone's. Ending is audited with who ended it and why; ended
sessions stay listed (with the reason) for the record. Idle timeout and absolute lifetime are enforced where
sessions are resolved (accounts.service.resolve_session).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select

from facetrail.accounts.service import _aware
from facetrail.audit.log import append_audit
from facetrail.context import AppContext
from facetrail.errors import NotFoundError
from facetrail.policy.principal import Principal
from facetrail.policy.roles import AuthenticationError, Permission
from facetrail.storage.models import User, WebSession, utcnow

SESSION_END = "auth.session_end"


def _session_dict(ctx: AppContext, ws: WebSession, current_id: int | None) -> dict[str, Any]:
    now = utcnow()
    expires = _aware(ws.expires_at)
    last_seen = _aware(ws.last_seen_at or ws.created_at)
    idle_until = last_seen + dt.timedelta(minutes=ctx.settings.auth.session_idle_minutes) if last_seen else None
    active = ws.ended_at is None and expires is not None and expires > now and (idle_until is None or idle_until > now)
    return {
        "id": ws.id,
        "user": ws.user.username,
        "created_at": _aware(ws.created_at),
        "last_seen_at": last_seen,
        "expires_at": expires,
        "ended_at": _aware(ws.ended_at),
        "end_reason": ws.end_reason,
        "active": active,
        "current": ws.id == current_id,
        "method": ws.method,
        "second_factor": ws.second_factor_at is not None,
        "ip": ws.ip,
        "user_agent": ws.user_agent,
    }


def list_sessions(
    ctx: AppContext, who: Principal, *, username: str | None = None, all_users: bool = False, limit: int = 200
) -> list[dict[str, Any]]:
    """The caller's own sessions; with ``username`` or ``all_users``, an administrator's view of others'."""
    if who.user_id is None:
        raise AuthenticationError("not signed in")
    current = who.credential_id if who.via == "session" else None
    with ctx.db.read() as s:
        q = select(WebSession).join(User, User.id == WebSession.user_id).order_by(WebSession.id.desc()).limit(limit)
        if username is not None or all_users:
            who.require(Permission.USERS_MANAGE)
            if username is not None:
                q = q.where(User.username == username)
        else:
            q = q.where(WebSession.user_id == who.user_id)
        return [_session_dict(ctx, ws, current) for ws in s.execute(q).scalars()]


def end_session_by_id(ctx: AppContext, who: Principal, session_id: int) -> dict[str, Any]:
    """End one session: one's own, or anyone's for an administrator. Audited."""
    if who.user_id is None:
        raise AuthenticationError("not signed in")
    with ctx.db.transaction() as s:
        ws = s.get(WebSession, session_id)
        if ws is None or (ws.user_id != who.user_id and not who.can(Permission.USERS_MANAGE)):
            raise NotFoundError(f"no session {session_id}")  # others' sessions are invisible, not "forbidden"
        own = ws.user_id == who.user_id
        if ws.ended_at is None:
            ws.ended_at = utcnow()
            ws.end_reason = "ended by its user" if own else f"ended by {who.actor}"
        append_audit(
            s,
            actor=who.actor,
            action=SESSION_END,
            target=f"session:{ws.id}",
            details={"owner": ws.user.username, "own": own, **who.audit_context()},
        )
        s.flush()
        return _session_dict(ctx, ws, who.credential_id if who.via == "session" else None)
