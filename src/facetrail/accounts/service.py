"""Users, units, sessions and API tokens. Every change and every login attempt is audited.

Only administrators create accounts (no self-signup). Tokens and session cookies are random secrets of
which only a SHA-256 is stored, so a database leak reveals no usable credential.

Guarantees (tests/adversarial/test_sessions_tokens.py, test_account_enumeration.py):
- a password change ends every other session of the user and revokes every API token; an administrator's
  password reset ends every session and revokes every token (old tokens never work again);
- API tokens are refused while the account is disabled or locked; each token has a scope
  (``policy.roles.TokenScope``) that the permission check enforces on top of the role, and a lifetime of
  at most ``auth.max_token_days`` (90 by default);
- a failed sign-in answers the same message, and does the same argon2 work, whether the name is unknown,
  the account is locked or disabled, or the password is wrong: no answer reveals which accounts exist.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import secrets
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from facetrail.accounts import grants
from facetrail.accounts.passwords import (
    DUMMY_HASH,
    check_password_rule,
    hash_password,
    needs_rehash,
    verify_password,
)
from facetrail.audit.log import append_audit
from facetrail.audit.refusals import refuse
from facetrail.context import AppContext
from facetrail.errors import (
    AuthenticationError,
    BadInputError,
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    ThrottledError,
)
from facetrail.policy.principal import Principal
from facetrail.policy.roles import Permission, Role, TokenScope
from facetrail.storage.cluster_models import LoginFailure
from facetrail.storage.models import ApiToken, Unit, User, WebSession, utcnow
from facetrail.text import check_text

USERNAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{2,63}$")
TOKEN_PREFIX = "ft_"  # noqa: S105 - a public marker, not a secret
# The one answer to every failed sign-in (unknown name, wrong password, locked or disabled account).
LOGIN_FAILED_MESSAGE = (
    "sign-in failed: wrong username or password, or the account is locked after repeated failures "
    "(wait and try again, or ask an administrator)"
)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    """SQLite returns naive datetimes for timezone-aware columns; they were written in UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=dt.UTC)


def principal_for(
    user: User,
    via: str,
    ip: str = "",
    user_agent: str = "",
    *,
    scope: str = TokenScope.FULL.value,
    session_id: int | None = None,
    credential_id: int | None = None,
) -> Principal:
    return Principal(
        user_id=user.id,
        username=user.username,
        role=user.role,
        unit_id=user.unit_id,
        unit_name=user.unit.name if user.unit else None,
        must_change_password=user.must_change_password,
        via=via,
        ip=ip,
        user_agent=user_agent,
        scope=scope,
        session_id=session_id,
        credential_id=credential_id if credential_id is not None else session_id,
    )


def _locked(user: User) -> bool:
    return bool(user.locked_until and _aware(user.locked_until) > utcnow())  # type: ignore[operator]


# --- bootstrap --------------------------------------------------------------------------------------------


def bootstrap_admin(ctx: AppContext) -> tuple[str, str | None] | None:
    """With no users at all, create one administrator. Returns (username, one-time password) or None.

    The password comes from FACETRAIL_ADMIN_PASSWORD if set, else is random; it must be changed at first login.
    A password from the environment is returned as None: whoever set it knows it, and it must never reach a log.
    """
    username = ctx.settings.auth.bootstrap_admin_username
    with ctx.db.transaction() as s:
        if s.execute(select(func.count()).select_from(User)).scalar_one() > 0:
            return None
        password = os.environ.get("FACETRAIL_ADMIN_PASSWORD") or secrets.token_urlsafe(12)
        check_password_rule(password)
        s.add(
            User(
                username=username,
                display_name="Administrator",
                role=Role.ADMINISTRATOR.value,
                password_hash=hash_password(password),
                must_change_password=True,
                created_by="system",
            )
        )
        from_env = bool(os.environ.get("FACETRAIL_ADMIN_PASSWORD"))
        append_audit(
            s,
            actor="system",
            action="user.bootstrap",
            target=f"user:{username}",
            details={"role": "administrator", "password_from_env": from_env},
        )
    return username, None if from_env else password


# --- units and users (administrators) ---------------------------------------------------------------------


def _clean(field: str, value: str, max_len: int = 200, required: bool = True) -> str:
    return check_text(field, value, max_len=max_len, required=required)


def create_unit(ctx: AppContext, by: Principal, name: str, agency: str = "") -> dict[str, Any]:
    by.require(Permission.USERS_MANAGE)
    name, agency = _clean("name", name), _clean("agency", agency, required=False)
    with ctx.db.transaction() as s:
        if s.execute(select(Unit).where(Unit.name == name)).scalar_one_or_none():
            raise ConflictError(f"a unit named {name!r} exists already", field="name")
        unit = Unit(name=name, agency=agency)
        s.add(unit)
        s.flush()
        append_audit(
            s,
            actor=by.actor,
            action="unit.create",
            target=f"unit:{unit.id}",
            details={"name": name, "agency": agency, **by.audit_context()},
        )
        return unit_dict(unit)


def unit_dict(unit: Unit) -> dict[str, Any]:
    return {"id": unit.id, "name": unit.name, "agency": unit.agency}


def list_units(ctx: AppContext) -> list[dict[str, Any]]:
    with ctx.db.read() as s:
        return [unit_dict(u) for u in s.execute(select(Unit).order_by(Unit.name)).scalars()]


def user_dict(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "username": user.username,
        "display_name": user.display_name,
        "role": user.role,
        "unit": user.unit.name if user.unit else None,
        "unit_id": user.unit_id,
        "disabled": user.disabled,
        "must_change_password": user.must_change_password,
        "locked": _locked(user),
        "created_at": _aware(user.created_at),
    }


def _find_unit(s: Session, unit: str | int | None) -> Unit | None:
    if unit in (None, ""):
        return None
    found = (
        s.get(Unit, unit)
        if isinstance(unit, int)
        else s.execute(select(Unit).where(Unit.name == unit)).scalar_one_or_none()
    )
    if found is None:
        raise NotFoundError(f"unknown unit {unit!r}", field="unit")
    return found


def create_user(
    ctx: AppContext,
    by: Principal,
    *,
    username: str,
    role: str,
    unit: str | int | None,
    display_name: str = "",
    password: str | None = None,
) -> tuple[dict[str, Any], str]:
    """Create an account with a one-time password (returned once) that must be changed at first login.

    A reviewer or administrator account is created disabled with a pending role grant (accounts.grants):
    ``pending_grant`` in the returned dict says when or by whose approval it takes effect."""
    by.require(Permission.USERS_MANAGE)
    username = _clean("username", username, 64).lower()
    if not USERNAME_RE.match(username):
        raise BadInputError(
            "username must be 3-64 characters: lower-case letters, digits, '.', '_' or '-'", field="username"
        )
    try:
        role_value = Role(role).value
    except ValueError:
        raise BadInputError(f"unknown role {role!r}; roles: {', '.join(r.value for r in Role)}", field="role") from None
    display_name = _clean("display_name", display_name, required=False)
    initial = password or secrets.token_urlsafe(12)
    check_password_rule(initial, username)
    with ctx.db.transaction() as s:
        if s.execute(select(User).where(User.username == username)).scalar_one_or_none():
            raise ConflictError(f"user {username!r} exists already", field="username")
        unit_row = _find_unit(s, unit)
        if role_value in (Role.INVESTIGATOR, Role.REVIEWER) and unit_row is None:
            raise BadInputError("investigators and reviewers must belong to a unit", field="unit")
        privileged = role_value in grants.PRIVILEGED
        user = User(
            username=username,
            display_name=display_name,
            role=role_value,
            unit_id=unit_row.id if unit_row else None,
            password_hash=hash_password(initial),
            must_change_password=True,
            created_by=by.actor,
            disabled=privileged,  # until its role grant takes effect
        )
        s.add(user)
        s.flush()
        append_audit(
            s,
            actor=by.actor,
            action="user.create",
            target=f"user:{username}",
            details={"role": role_value, "unit": unit_row.name if unit_row else None, **by.audit_context()},
        )
        grant = (
            grants.request_grant(ctx, s, by.user_id, by.actor, user, role_value, new_account=True)
            if privileged
            else None
        )
        s.flush()
        s.refresh(user)
        out = user_dict(user)
        out["pending_grant"] = (
            grants.grant_dict(s, grant) if grant is not None and grant.status == grants.PENDING else None
        )
        return out, initial


def list_users(ctx: AppContext, by: Principal) -> list[dict[str, Any]]:
    by.require(Permission.USERS_MANAGE)
    with ctx.db.read() as s:
        return [user_dict(u) for u in s.execute(select(User).order_by(User.username)).scalars()]


def update_user(
    ctx: AppContext,
    by: Principal,
    username: str,
    *,
    role: str | None = None,
    unit: str | int | None = None,
    disabled: bool | None = None,
    reset_password: bool = False,
) -> tuple[dict[str, Any], str | None]:
    """Change role, unit or disabled state, or reset the password (returned once). Ends the user's sessions.

    Separation of duties (accounts.grants): nobody changes their own role; the last active administrator is
    neither demoted nor disabled (refusals audited, code separation_of_duties); a change to reviewer or
    administrator becomes a pending role grant (``pending_grant``) and the user keeps the old role meanwhile."""
    by.require(Permission.USERS_MANAGE)
    try:
        return _update_user(ctx, by, username, role, unit, disabled, reset_password)
    except grants.SeparationOfDutiesError as exc:
        raise refuse(
            ctx, by, "user.update", f"user:{username}", exc, details={"role": role, "disabled": disabled}
        ) from None


def _update_user(
    ctx: AppContext,
    by: Principal,
    username: str,
    role: str | None,
    unit: str | int | None,
    disabled: bool | None,
    reset_password: bool,
) -> tuple[dict[str, Any], str | None]:
    grant = None
    with ctx.db.transaction() as s:
        user = s.execute(select(User).where(User.username == username)).scalar_one_or_none()
        if user is None:
            raise NotFoundError(f"unknown user {username!r}", field="username")
        changes: dict[str, Any] = {}
        if role is not None:
            try:
                new_role = Role(role).value
            except ValueError:
                raise BadInputError(f"unknown role {role!r}", field="role") from None
            if new_role != user.role:
                grants.check_role_change(s, by.user_id, user, new_role)
                if new_role in grants.PRIVILEGED:
                    changes["role_requested"] = new_role  # the grant below; the old role stays meanwhile
                else:
                    user.role = changes["role"] = new_role
        if unit is not None:
            unit_row = _find_unit(s, unit)
            user.unit_id = unit_row.id if unit_row else None
            changes["unit"] = unit_row.name if unit_row else None
        if disabled is not None:
            if user.id == by.user_id and disabled:
                raise BadInputError("administrators cannot disable their own account", field="disabled")
            if disabled and not user.disabled:
                grants.check_disable(s, user)
            if not disabled and user.disabled:
                grants.check_enable(s, user)
            user.disabled = changes["disabled"] = disabled
        new_password = None
        if reset_password:
            new_password = secrets.token_urlsafe(12)
            user.password_hash = hash_password(new_password)
            user.must_change_password = True
            user.failed_logins, user.locked_until = 0, None
            user.password_changed_at = utcnow()
            changes["password_reset"] = True
            # Old tokens must never work again, not even once the user has chosen a new password.
            changes["tokens_revoked"] = _revoke_tokens(s, user.id)
        target_role = changes.get("role_requested", user.role)
        if target_role in (Role.INVESTIGATOR, Role.REVIEWER) and user.unit_id is None:
            raise BadInputError("investigators and reviewers must belong to a unit", field="unit")
        changes["sessions_ended"] = _end_sessions(s, user.id)
        append_audit(
            s,
            actor=by.actor,
            action="user.update",
            target=f"user:{username}",
            details={**changes, **by.audit_context()},
        )
        if "role_requested" in changes:
            grant = grants.request_grant(
                ctx, s, by.user_id, by.actor, user, changes["role_requested"], new_account=False
            )
        s.flush()
        s.refresh(user)
        out = user_dict(user)
        out["pending_grant"] = (
            grants.grant_dict(s, grant) if grant is not None and grant.status == grants.PENDING else None
        )
        return out, new_password


def _end_sessions(s: Session, user_id: int, keep_session_id: int | None = None) -> int:
    """End the user's open sessions (all but ``keep_session_id``); returns how many were ended."""
    open_sessions = select(WebSession).where(WebSession.user_id == user_id, WebSession.ended_at.is_(None))
    ended = 0
    for ws in s.execute(open_sessions).scalars():
        if ws.id != keep_session_id:
            ws.ended_at = utcnow()
            ended += 1
    return ended


def _revoke_tokens(s: Session, user_id: int) -> int:
    """Revoke every live API token of the user; returns how many were revoked."""
    live = select(ApiToken).where(ApiToken.user_id == user_id, ApiToken.revoked_at.is_(None))
    revoked = 0
    for token in s.execute(live).scalars():
        token.revoked_at = utcnow()
        revoked += 1
    return revoked


# --- login, throttling, lockout ---------------------------------------------------------------------------


def _address_blocked(ctx: AppContext, ip: str, limit: int, window: float) -> bool:
    """Whether this address has ``limit`` failed logins within the window, counted in the database: every
    server process and host sees the same count."""
    since = utcnow() - dt.timedelta(seconds=window)
    with ctx.db.read() as s:
        count = s.execute(
            select(func.count()).select_from(LoginFailure).where(LoginFailure.address == ip, LoginFailure.at >= since)
        ).scalar_one()
    return int(count) >= limit


def _address_failed(s: Session, ip: str, window: float) -> None:
    now = utcnow()
    s.add(LoginFailure(address=ip[:100], at=now))
    # this address's entries past the window are no longer counted: drop them as we go (retention drops the rest)
    s.execute(
        delete(LoginFailure).where(
            LoginFailure.address == ip[:100], LoginFailure.at < now - dt.timedelta(seconds=window)
        )
    )


def authenticate(ctx: AppContext, username: str, password: str, *, ip: str = "", user_agent: str = "") -> Principal:
    """Check a password. Failures are counted per account (lockout) and per address (throttle), and audited."""
    grants.apply_due(ctx)  # a role grant whose delay has passed takes effect before anyone signs in
    auth = ctx.settings.auth
    username = (username or "").strip().lower()[:100]
    meta = {"ip": ip, "user_agent": user_agent[:300]}
    if _address_blocked(ctx, ip[:100], auth.ip_failures_per_window, auth.ip_window_seconds):
        with ctx.db.transaction() as s:
            append_audit(
                s,
                actor=f"user:{username}" if username else "anonymous",
                action="auth.login",
                target=f"user:{username}",
                outcome="throttled",
                details=meta,
            )
        raise ThrottledError("too many failed logins from this address; wait a few minutes and try again")
    with ctx.db.transaction() as s:
        # row-locked (PostgreSQL) so concurrent failures on several hosts all count toward the lockout
        user = s.execute(select(User).where(User.username == username).with_for_update()).scalar_one_or_none()
        now = utcnow()
        # Every path below does exactly one argon2 verification, so that the time taken does not tell an
        # unknown name from a locked, disabled or real account (tests/adversarial/test_account_enumeration.py).
        if user is None:
            verify_password(DUMMY_HASH, password or "")
            outcome, reason = "failed", "bad credentials"
        elif user.disabled:
            verify_password(user.password_hash, password or "")
            outcome, reason = "refused", "account disabled"
        elif not _password_sign_in_allowed(ctx, user):
            verify_password(user.password_hash, password or "")
            outcome, reason = "refused", "password sign-in is off for this account (single sign-on)"
        elif _locked(user):
            verify_password(user.password_hash, password or "")  # even a right password does not unlock it
            outcome, reason = "locked", "account locked"
        elif not verify_password(user.password_hash, password or ""):
            user.failed_logins += 1
            outcome, reason = "failed", "bad credentials"
            if user.failed_logins >= auth.max_failed_logins:
                user.locked_until = now + dt.timedelta(minutes=auth.lockout_minutes)
                user.failed_logins = 0
                outcome = "locked"
        else:
            user.failed_logins, user.locked_until = 0, None
            if needs_rehash(user.password_hash):
                user.password_hash = hash_password(password)
            append_audit(s, actor=f"user:{username}", action="auth.login", target=f"user:{username}", details=meta)
            s.flush()
            s.refresh(user)
            return principal_for(user, "session", ip, user_agent)
        append_audit(
            s,
            actor=f"user:{username}" if username else "anonymous",
            action="auth.login",
            target=f"user:{username}",
            outcome=outcome,
            details={**meta, "reason": reason},
        )
        _address_failed(s, ip, auth.ip_window_seconds)
    # One message for unknown user, wrong password, locked and disabled account: no account enumeration.
    # (The audit log, which only auditors read, records which it was.)
    raise AuthenticationError(LOGIN_FAILED_MESSAGE)


def _password_sign_in_allowed(ctx: AppContext, user: User) -> bool:
    """SSO-provisioned users never sign in with a password; with ``oidc.local_passwords`` off only the
    break-glass administrators do."""
    if user.external_subject is not None:
        return False
    return ctx.settings.oidc.local_passwords or user.username in ctx.settings.oidc.break_glass_users


def change_password(ctx: AppContext, who: Principal, old_password: str, new_password: str) -> None:
    if who.user_id is None:
        raise AuthenticationError("not signed in")
    if who.scope != TokenScope.FULL:
        raise PermissionDeniedError(f"this API token's scope '{who.scope}' does not allow a password change")
    check_password_rule(new_password, who.username)
    if old_password == new_password:
        raise BadInputError("the new password must differ from the old one", field="new_password")
    auth = ctx.settings.auth
    if _address_blocked(ctx, who.ip[:100], auth.ip_failures_per_window, auth.ip_window_seconds):
        with ctx.db.transaction() as s:
            append_audit(
                s,
                actor=who.actor,
                action="user.password_change",
                target=f"user:{who.username}",
                outcome="throttled",
                details=who.audit_context(),
            )
        raise ThrottledError("too many failed attempts from this address; wait a few minutes and try again")
    refused: str | None = None
    with ctx.db.transaction() as s:
        # The current password is a password guess like a sign-in: whoever holds a session (a stolen cookie)
        # must not get unlimited guesses here. Failures count toward the lockout and the address throttle and
        # are recorded in this committed transaction (the refusal is raised after it).
        user = s.execute(select(User).where(User.id == who.user_id).with_for_update()).scalar_one_or_none()
        if user is None:
            refused = "no such user"
        elif _locked(user):
            verify_password(user.password_hash, old_password)
            refused = "account locked"
        elif not verify_password(user.password_hash, old_password):
            refused = "bad credentials"
            user.failed_logins += 1
            if user.failed_logins >= auth.max_failed_logins:
                user.locked_until = utcnow() + dt.timedelta(minutes=auth.lockout_minutes)
                user.failed_logins = 0
                refused = "account locked"
        if refused is not None:
            append_audit(
                s,
                actor=who.actor,
                action="user.password_change",
                target=f"user:{who.username}",
                outcome="locked" if refused == "account locked" else "failed",
                details={**who.audit_context(), "reason": refused},
            )
            _address_failed(s, who.ip, auth.ip_window_seconds)
    if refused is not None:
        raise AuthenticationError(
            "the current password is wrong, or the account is locked after repeated failures (wait and try again)"
        )
    with ctx.db.transaction() as s:
        user = s.get(User, who.user_id)
        assert user is not None
        user.password_hash = hash_password(new_password)
        user.must_change_password = False
        user.password_changed_at = utcnow()
        # Whoever knew the old password may have opened sessions or made tokens: they all end now. Only the
        # session making the change (if it is one) stays signed in.
        keep = who.session_id if who.via == "session" else None
        ended = _end_sessions(s, user.id, keep_session_id=keep)
        revoked = _revoke_tokens(s, user.id)
        append_audit(
            s,
            actor=who.actor,
            action="user.password_change",
            target=f"user:{who.username}",
            details={"sessions_ended": ended, "tokens_revoked": revoked, **who.audit_context()},
        )


# --- browser sessions -------------------------------------------------------------------------------------


def create_session(ctx: AppContext, who: Principal, method: str = "password") -> tuple[str, str]:
    """A new session for a signed-in user: (cookie token, CSRF token). It has shown no second factor yet."""
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    now = utcnow()
    expires = now + dt.timedelta(hours=ctx.settings.auth.session_hours)
    with ctx.db.transaction() as s:
        s.add(
            WebSession(
                token_hash=_sha256(token),
                user_id=who.user_id,
                csrf_token=csrf,
                expires_at=expires,
                last_seen_at=now,
                method=method,
                ip=who.ip[:100],
                user_agent=who.user_agent[:300],
            )
        )
    return token, csrf


def resolve_session(ctx: AppContext, token: str, *, ip: str = "", user_agent: str = "") -> tuple[Principal, str] | None:
    if not token or len(token) > 200:
        return None
    grants.apply_due(ctx)
    with ctx.db.read() as s:
        ws = s.execute(select(WebSession).where(WebSession.token_hash == _sha256(token))).scalar_one_or_none()
        if ws is None or ws.ended_at is not None or _aware(ws.expires_at) <= utcnow():  # type: ignore[operator]
            return None
        user = ws.user
        if user.disabled:
            return None
        idle_limit = dt.timedelta(minutes=ctx.settings.auth.session_idle_minutes)
        last_seen = _aware(ws.last_seen_at or ws.created_at)
        idle = last_seen is not None and utcnow() - last_seen > idle_limit
        principal, csrf, session_id = (
            principal_for(user, "session", ip, user_agent, session_id=ws.id),
            ws.csrf_token,
            ws.id,
        )
    if idle:
        _end_idle_session(ctx, session_id, principal)
        return None
    _touch_session(ctx, session_id, last_seen, idle_limit)
    return principal, csrf


def _end_idle_session(ctx: AppContext, session_id: int, who: Principal) -> None:
    with ctx.db.transaction() as s:
        ws = s.get(WebSession, session_id)
        if ws is None or ws.ended_at is not None:
            return
        ws.ended_at, ws.end_reason = utcnow(), "idle timeout"
        append_audit(
            s,
            actor=who.actor,
            action="auth.session_end",
            target=f"session:{session_id}",
            outcome="expired",
            details={**who.audit_context(), "reason": "idle timeout"},
        )


def _touch_session(ctx: AppContext, session_id: int, last_seen: dt.datetime | None, idle_limit: dt.timedelta) -> None:
    """Record activity for the idle timeout, at most once a minute (not a write on every request)."""
    now = utcnow()
    if last_seen is not None and now - last_seen < min(dt.timedelta(seconds=60), idle_limit / 4):
        return
    with ctx.db.transaction() as s:
        s.execute(update(WebSession).where(WebSession.id == session_id).values(last_seen_at=now))


def end_session(ctx: AppContext, token: str, who: Principal | None = None) -> None:
    with ctx.db.transaction() as s:
        ws = s.execute(select(WebSession).where(WebSession.token_hash == _sha256(token))).scalar_one_or_none()
        if ws is not None and ws.ended_at is None:
            ws.ended_at, ws.end_reason = utcnow(), "signed out"
            if who is not None:
                append_audit(
                    s, actor=who.actor, action="auth.logout", target=f"user:{who.username}", details=who.audit_context()
                )


# --- API tokens -------------------------------------------------------------------------------------------


def token_dict(t: ApiToken) -> dict[str, Any]:
    return {
        "id": t.id,
        "name": t.name,
        "prefix": t.prefix,
        "user": t.user.username if t.user else None,
        "created_at": _aware(t.created_at),
        "expires_at": _aware(t.expires_at),
        "revoked": t.revoked_at is not None,
        "scope": t.scope,
        "last_used_at": _aware(t.last_used_at),
    }


def create_api_token(
    ctx: AppContext, who: Principal, name: str, days: int | None = None, scope: str | None = None
) -> tuple[dict[str, Any], str]:
    """A token for the caller's own machine client; the secret is returned once and never stored.

    ``scope`` (read | search | full; default ``auth.default_token_scope``) narrows what the token may do
    within the owner's role. A token can only be made by a principal in full scope (a read-only token cannot
    mint a broader one)."""
    who.require(Permission.TOKENS_OWN)
    name = _clean("name", name, 200)
    auth = ctx.settings.auth
    days = auth.default_token_days if days is None else days
    if not 1 <= days <= auth.max_token_days:
        raise BadInputError(f"days must be between 1 and {auth.max_token_days}", field="days")
    try:
        scope_value = TokenScope(scope or auth.default_token_scope).value
    except ValueError:
        raise BadInputError(
            f"unknown scope {scope!r}; scopes: {', '.join(t.value for t in TokenScope)}", field="scope"
        ) from None
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with ctx.db.transaction() as s:
        row = ApiToken(
            user_id=who.user_id,
            name=name,
            prefix=secret[:10],
            token_hash=_sha256(secret),
            expires_at=utcnow() + dt.timedelta(days=days),
            scope=scope_value,
        )
        s.add(row)
        s.flush()
        s.refresh(row)
        append_audit(
            s,
            actor=who.actor,
            action="token.create",
            target=f"token:{row.id}",
            details={"name": name, "days": days, "scope": scope_value, **who.audit_context()},
        )
        return token_dict(row), secret


def list_api_tokens(ctx: AppContext, who: Principal, *, all_users: bool = False) -> list[dict[str, Any]]:
    who.require(Permission.TOKENS_OWN)
    if all_users:
        who.require(Permission.USERS_MANAGE)
    with ctx.db.read() as s:
        q = select(ApiToken).order_by(ApiToken.id)
        if not all_users:
            q = q.where(ApiToken.user_id == who.user_id)
        return [token_dict(t) for t in s.execute(q).scalars()]


def revoke_api_token(ctx: AppContext, who: Principal, token_id: int) -> dict[str, Any]:
    with ctx.db.transaction() as s:
        row = s.get(ApiToken, token_id)
        if row is None or (row.user_id != who.user_id and not who.can(Permission.USERS_MANAGE)):
            raise NotFoundError(f"no token {token_id}")  # others' tokens are invisible, not "forbidden"
        if row.revoked_at is None:
            row.revoked_at = utcnow()
        append_audit(
            s,
            actor=who.actor,
            action="token.revoke",
            target=f"token:{row.id}",
            details={"owner": row.user.username, **who.audit_context()},
        )
        return token_dict(row)


def resolve_api_token(ctx: AppContext, secret: str, *, ip: str = "", user_agent: str = "") -> Principal | None:
    if not secret.startswith(TOKEN_PREFIX) or len(secret) > 200:
        return None
    grants.apply_due(ctx)
    with ctx.db.transaction() as s:
        row = s.execute(select(ApiToken).where(ApiToken.token_hash == _sha256(secret))).scalar_one_or_none()
        if row is None or row.revoked_at is not None or _aware(row.expires_at) <= utcnow():  # type: ignore[operator]
            return None
        if row.user.disabled or _locked(row.user):
            return None  # a locked account's tokens wait until the lock ends (or an administrator resets it)
        row.last_used_at = utcnow()
        return principal_for(row.user, "token", ip, user_agent, scope=row.scope, credential_id=row.id)
