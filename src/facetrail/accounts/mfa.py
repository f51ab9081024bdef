"""Second factors: TOTP enrolment and verification, one-time recovery codes, step-up, the administrator's reset.

Guarantees:
- Which roles must present a second factor at sign-in is a setting (``mfa.required_roles``, default: all).
  A session of such a user reaches nothing but the enrolment / second-factor pages until a factor is shown;
  an API token of such a user works only while the user has a confirmed factor.
- A TOTP code is accepted once: the newest accepted 30-second step is stored and only later steps pass (an
  atomic conditional UPDATE, so two servers cannot both accept the same code). Codes of the previous and
  next step are accepted (clock skew of one step either way).
- Recovery codes are shown once and stored as SHA-256 only; each works once.
- Every failure counts towards the account's lockout (the same counter as wrong passwords) and is audited
  with the request's address; so is every success, enrolment and reset.
- Sensitive acts need a second factor presented within ``mfa.step_up_minutes`` on the same credential
  (session or API token): ``require_fresh_second_factor`` refuses with ``step_up_required`` (HTTP 401).
- An administrator's reset removes every factor of the user (TOTP, recovery codes, passkeys) and ends the
  user's sessions; the administrator never sees the user's new secret, which the user makes at next sign-in.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import io
import secrets
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import pyotp
import segno
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from facetrail.accounts.service import _aware
from facetrail.audit.log import append_audit
from facetrail.audit.refusals import refuse
from facetrail.context import AppContext
from facetrail.errors import BadInputError, ConflictError, FaceTrailError, NotFoundError
from facetrail.policy.principal import Principal
from facetrail.policy.roles import AuthenticationError, Permission
from facetrail.storage.models import (
    ApiToken,
    PasskeyCredential,
    RecoveryCode,
    TotpEnrolment,
    User,
    WebSession,
    utcnow,
)

STEP_SECONDS = 30


class MfaEvent(StrEnum):
    """Audit actions of this module (docs/audit.md)."""

    ENROL_START = "mfa.enrol_start"
    ENROL = "mfa.enrol"
    SECOND_FACTOR = "auth.second_factor"
    STEP_UP = "auth.step_up"
    RESET = "mfa.reset"
    RECOVERY_CODES = "mfa.recovery_codes"


class StepUpRequiredError(FaceTrailError):
    """A sensitive act without a recent second factor. Present one (POST /api/v1/auth/mfa/verify), then retry."""

    code = "step_up_required"
    http_status = 401
    exit_code = 6


class SecondFactorRequiredError(FaceTrailError):
    """The session has not shown its second factor yet (or the user has none enrolled)."""

    code = "second_factor_required"
    http_status = 401
    exit_code = 6


class EnrolmentRequiredError(SecondFactorRequiredError):
    code = "mfa_enrolment_required"


class WrongCodeError(AuthenticationError):
    code = "wrong_code"


class AccountLockedError(AuthenticationError):
    code = "account_locked"


@dataclass(frozen=True)
class FactorState:
    """What a credential has shown: ``required`` (the role must use MFA), ``enrolled`` (a confirmed factor
    exists), ``second_factor_at`` (when this session or token last presented one)."""

    required: bool
    enrolled: bool
    second_factor_at: dt.datetime | None

    @property
    def satisfied(self) -> bool:
        return not self.required or self.second_factor_at is not None


def required_for(ctx: AppContext, role: str) -> bool:
    return role in ctx.settings.mfa.required_roles


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _has_factor(s: Session, user_id: int) -> bool:
    totp = s.execute(
        select(TotpEnrolment.user_id).where(TotpEnrolment.user_id == user_id, TotpEnrolment.confirmed_at.is_not(None))
    ).first()
    if totp is not None:
        return True
    passkeys = select(func.count()).where(PasskeyCredential.user_id == user_id, PasskeyCredential.revoked_at.is_(None))
    return bool(s.execute(passkeys).scalar_one())


def _credential_second_factor_at(s: Session, who: Principal) -> dt.datetime | None:
    if who.credential_id is None:
        return None
    model: type[WebSession] | type[ApiToken] = WebSession if who.via == "session" else ApiToken
    value = s.execute(select(model.second_factor_at).where(model.id == who.credential_id)).scalar_one_or_none()
    return _aware(value)


def factor_state(ctx: AppContext, who: Principal) -> FactorState:
    """The second-factor state of the caller's credential, read fresh from the database."""
    if who.user_id is None or who.via == "cli":
        return FactorState(required=False, enrolled=False, second_factor_at=None)
    with ctx.db.read() as s:
        return FactorState(
            required=required_for(ctx, who.role),
            enrolled=_has_factor(s, who.user_id),
            second_factor_at=_credential_second_factor_at(s, who),
        )


def check_gate(ctx: AppContext, who: Principal, *, enrolment_may_wait: bool = False) -> None:
    """Refuse a credential that has not satisfied the MFA policy (the request gate calls this).

    ``enrolment_may_wait``: a user with no factor yet may pass (the forced password change of a new account
    comes before enrolment); an enrolled user must still show the code."""
    if who.via == "cli" or not required_for(ctx, who.role) or who.user_id is None:
        return
    with ctx.db.read() as s:
        if who.via == "session" and _credential_second_factor_at(s, who) is not None:
            return  # the common case: one query
        state = FactorState(required=True, enrolled=_has_factor(s, who.user_id), second_factor_at=None)
    if who.via == "token":
        if not state.enrolled and not enrolment_may_wait:
            raise EnrolmentRequiredError(
                "this account must enrol a second factor (sign in with a browser) before its API tokens work"
            )
        return
    if state.second_factor_at is None:
        if not state.enrolled and enrolment_may_wait:
            return
        if not state.enrolled:
            raise EnrolmentRequiredError("enrol a second factor first (POST /api/v1/auth/mfa/totp/enrol)")
        raise SecondFactorRequiredError("enter the code of your authenticator (POST /api/v1/auth/mfa/verify)")


# --- TOTP enrolment ---------------------------------------------------------------------------------------


def _totp(ctx: AppContext, secret: str, username: str) -> pyotp.TOTP:
    return pyotp.TOTP(secret, interval=STEP_SECONDS, issuer=ctx.settings.mfa.issuer, name=username)


def _qr_data_uri(uri: str) -> str:
    """An SVG QR code as a data: URI (the CSP allows data: images; no script draws it)."""
    out = io.BytesIO()
    segno.make(uri, error="m").save(out, kind="svg", scale=5, border=2, xmldecl=False)  # with xmlns: an image
    return "data:image/svg+xml;base64," + base64.b64encode(out.getvalue()).decode()


def begin_totp_enrolment(ctx: AppContext, who: Principal) -> dict[str, Any]:
    """A pending (unconfirmed) TOTP secret for the caller: the secret in text, its otpauth URI and a QR code.

    Asking again before confirming shows the same secret. A confirmed enrolment must be reset by an
    administrator first (conflict), so a stolen session cannot silently replace the owner's factor.
    """
    if who.user_id is None:
        raise AuthenticationError("not signed in")
    with ctx.db.transaction() as s:
        row = s.get(TotpEnrolment, who.user_id)
        if row is not None and row.confirmed_at is not None:
            raise ConflictError("a second factor is enrolled already; an administrator can reset it")
        if row is None:
            row = TotpEnrolment(user_id=who.user_id, secret=pyotp.random_base32(length=32))
            s.add(row)
            append_audit(
                s,
                actor=who.actor,
                action=MfaEvent.ENROL_START,
                target=f"user:{who.username}",
                details=who.audit_context(),
            )
        secret = row.secret
    uri = _totp(ctx, secret, who.username).provisioning_uri()
    return {"secret": secret, "otpauth_uri": uri, "qr_svg": _qr_data_uri(uri), "issuer": ctx.settings.mfa.issuer}


def _new_recovery_codes(s: Session, ctx: AppContext, user_id: int) -> list[str]:
    s.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user_id))
    codes = []
    for _ in range(ctx.settings.mfa.recovery_codes):
        raw = base64.b32encode(secrets.token_bytes(10)).decode()[:15]  # 75 bits
        code = "-".join(raw[i : i + 5] for i in range(0, 15, 5))
        s.add(RecoveryCode(user_id=user_id, code_hash=_sha256(_normalise_recovery(code))))
        codes.append(code)
    return codes


def _normalise_recovery(code: str) -> str:
    return "".join(ch for ch in code.upper() if ch.isalnum())


def confirm_totp_enrolment(ctx: AppContext, who: Principal, code: str) -> list[str]:
    """Confirm the pending secret with a code from the app. Returns the recovery codes (shown once).

    The confirming code counts as this session's second factor."""
    if who.user_id is None:
        raise AuthenticationError("not signed in")
    with ctx.db.transaction() as s:
        row = s.get(TotpEnrolment, who.user_id)
        if row is None:
            raise BadInputError("start the enrolment first", field="code")
        if row.confirmed_at is not None:
            raise ConflictError("a second factor is enrolled already")
        pending_secret = row.secret
    step = _matching_step(ctx, pending_secret, who.username, code)
    with ctx.db.transaction() as s:
        user = s.get(User, who.user_id)
        assert user is not None
        if step is None:
            outcome = _count_failure(ctx, s, user)
            append_audit(
                s,
                actor=who.actor,
                action=MfaEvent.ENROL,
                target=f"user:{who.username}",
                outcome=outcome,
                details={**who.audit_context(), "reason": "wrong code"},
            )
        else:
            row = s.get(TotpEnrolment, who.user_id)
            assert row is not None
            row.confirmed_at, row.last_step = utcnow(), step
            user.failed_logins = 0
            codes = _new_recovery_codes(s, ctx, who.user_id)
            _mark_second_factor(s, who)
            append_audit(
                s,
                actor=who.actor,
                action=MfaEvent.ENROL,
                target=f"user:{who.username}",
                details={**who.audit_context(), "factor": "totp", "recovery_codes": len(codes)},
            )
            return codes
    _raise_failure(ctx, outcome)
    raise AssertionError("unreachable")


def _matching_step(ctx: AppContext, secret: str, username: str, code: str, now: float | None = None) -> int | None:
    """The 30 s step (previous, current or next) whose code this is, or None."""
    code = "".join(ch for ch in (code or "") if ch.isdigit())
    if len(code) != 6:
        return None
    totp = _totp(ctx, secret, username)
    current = int((time.time() if now is None else now) // STEP_SECONDS)
    for step in (current - 1, current, current + 1):
        if hmac.compare_digest(totp.at(step * STEP_SECONDS), code):
            return step
    return None


# --- verification: sign-in and step-up --------------------------------------------------------------------


def _count_failure(ctx: AppContext, s: Session, user: User) -> str:
    """A wrong second factor counts towards lockout exactly like a wrong password. The increment is one UPDATE,
    so failures presented at once on several servers are all counted."""
    s.execute(update(User).where(User.id == user.id).values(failed_logins=User.failed_logins + 1))
    s.refresh(user)
    if user.failed_logins >= ctx.settings.auth.max_failed_logins:
        user.locked_until = utcnow() + dt.timedelta(minutes=ctx.settings.auth.lockout_minutes)
        user.failed_logins = 0
        return "locked"
    return "failed"


def _raise_failure(ctx: AppContext, outcome: str) -> None:
    if outcome == "locked":
        raise AccountLockedError(
            f"account locked after repeated failed attempts; try again in {ctx.settings.auth.lockout_minutes:g} "
            "minutes or ask an administrator"
        )
    raise WrongCodeError("wrong or already used code")


def _mark_second_factor(s: Session, who: Principal) -> None:
    if who.credential_id is None:
        return
    model: type[WebSession] | type[ApiToken] = WebSession if who.via == "session" else ApiToken
    s.execute(update(model).where(model.id == who.credential_id).values(second_factor_at=utcnow()))


def verify_second_factor(ctx: AppContext, who: Principal, code: str, *, purpose: str = "sign_in") -> str:
    """Check a TOTP code or a recovery code for the caller; on success the caller's session or token counts
    as having shown its second factor now (sign-in and step-up alike). Returns the factor used."""
    if who.user_id is None or who.via == "cli" or who.credential_id is None:
        raise AuthenticationError("a second factor belongs to a signed-in session or an API token")
    action = MfaEvent.STEP_UP if purpose == "step_up" else MfaEvent.SECOND_FACTOR
    code = (code or "").strip()[:64]
    with ctx.db.read() as s:
        user = s.get(User, who.user_id)
        locked = bool(user and user.locked_until and _aware(user.locked_until) > utcnow())  # type: ignore[operator]
        enrolment = s.get(TotpEnrolment, who.user_id)
        secret = enrolment.secret if enrolment is not None and enrolment.confirmed_at is not None else None
    factor = "totp" if len("".join(ch for ch in code if ch.isdigit())) == 6 and len(code) <= 8 else "recovery_code"
    with ctx.db.transaction() as s:
        user = s.get(User, who.user_id)
        assert user is not None
        details = {**who.audit_context(), "factor": factor}
        if locked:
            append_audit(
                s,
                actor=who.actor,
                action=action,
                target=f"user:{who.username}",
                outcome="locked",
                details={**details, "reason": "account locked"},
            )
            outcome = "locked"
        else:
            ok = False
            if factor == "totp" and secret is not None:
                step = _matching_step(ctx, secret, who.username, code)
                if step is not None:  # atomic: only a step newer than the last accepted one passes
                    result = s.execute(
                        update(TotpEnrolment)
                        .where(
                            TotpEnrolment.user_id == who.user_id,
                            (TotpEnrolment.last_step.is_(None)) | (TotpEnrolment.last_step < step),
                        )
                        .values(last_step=step)
                    )
                    ok = result.rowcount == 1  # type: ignore[attr-defined]
                    if not ok:
                        details["reason"] = "code already used"
            elif factor == "recovery_code":
                result = s.execute(
                    update(RecoveryCode)
                    .where(
                        RecoveryCode.user_id == who.user_id,
                        RecoveryCode.code_hash == _sha256(_normalise_recovery(code)),
                        RecoveryCode.used_at.is_(None),
                    )
                    .values(used_at=utcnow())
                )
                ok = result.rowcount == 1  # type: ignore[attr-defined]
            if ok:
                user.failed_logins = 0
                _mark_second_factor(s, who)
                append_audit(s, actor=who.actor, action=action, target=f"user:{who.username}", details=details)
                return factor
            outcome = _count_failure(ctx, s, user)
            details.setdefault("reason", "wrong code")
            append_audit(
                s, actor=who.actor, action=action, target=f"user:{who.username}", outcome=outcome, details=details
            )
    _raise_failure(ctx, outcome)
    raise AssertionError("unreachable")


def mark_second_factor(ctx: AppContext, who: Principal) -> None:
    """Record that the caller's credential has just shown a second factor by other means (a passkey)."""
    with ctx.db.transaction() as s:
        _mark_second_factor(s, who)


def require_fresh_second_factor(ctx: AppContext, who: Principal, act: str) -> None:
    """Step-up: refuse a sensitive act unless this session or token showed a second factor within
    ``mfa.step_up_minutes``. The local CLI operator (no credential) is not asked.

    Users whose role need not use MFA and who have no factor enrolled are not asked either (MFA off)."""
    if who.via == "cli" or who.user_id is None:
        return
    state = factor_state(ctx, who)
    if not state.required and not state.enrolled:
        return
    window = dt.timedelta(minutes=ctx.settings.mfa.step_up_minutes)
    if state.second_factor_at is not None and utcnow() - state.second_factor_at <= window:
        return
    error = StepUpRequiredError(
        f"{act} needs a fresh second factor (within {ctx.settings.mfa.step_up_minutes:g} minutes): "
        "POST /api/v1/auth/mfa/verify with a code, then retry",
        act=act,
    )
    raise refuse(ctx, who, MfaEvent.STEP_UP, f"user:{who.username}", error, details={"act": act}, outcome="required")


# --- status, recovery codes, reset ------------------------------------------------------------------------


def mfa_status(ctx: AppContext, who: Principal) -> dict[str, Any]:
    if who.user_id is None:
        raise AuthenticationError("not signed in")
    state = factor_state(ctx, who)
    with ctx.db.read() as s:
        enrolment = s.get(TotpEnrolment, who.user_id)
        totp_enrolled = bool(enrolment and enrolment.confirmed_at)
        left = s.execute(
            select(func.count()).where(RecoveryCode.user_id == who.user_id, RecoveryCode.used_at.is_(None))
        ).scalar_one()
        passkeys = s.execute(
            select(func.count()).where(PasskeyCredential.user_id == who.user_id, PasskeyCredential.revoked_at.is_(None))
        ).scalar_one()
    fresh_until = (
        state.second_factor_at + dt.timedelta(minutes=ctx.settings.mfa.step_up_minutes)
        if state.second_factor_at
        else None
    )
    return {
        "required": state.required,
        "totp_enrolled": totp_enrolled,
        "passkeys": int(passkeys),
        "recovery_codes_left": int(left),
        "second_factor_at": state.second_factor_at,
        "step_up_fresh_until": fresh_until,
    }


def regenerate_recovery_codes(ctx: AppContext, who: Principal) -> list[str]:
    """New recovery codes replace the old ones (a step-up is required: they are a factor)."""
    if who.user_id is None:
        raise AuthenticationError("not signed in")
    require_fresh_second_factor(ctx, who, "replacing recovery codes")
    with ctx.db.transaction() as s:
        if not _has_factor(s, who.user_id):
            raise BadInputError("enrol a second factor first")
        codes = _new_recovery_codes(s, ctx, who.user_id)
        append_audit(
            s,
            actor=who.actor,
            action=MfaEvent.RECOVERY_CODES,
            target=f"user:{who.username}",
            details={**who.audit_context(), "count": len(codes)},
        )
        return codes


def reset_mfa(ctx: AppContext, by: Principal, username: str) -> None:
    """An administrator removes every second factor of a user and ends the user's sessions; the user enrols
    again at next sign-in. The administrator never sees any secret."""
    by.require(Permission.USERS_MANAGE)
    require_fresh_second_factor(ctx, by, "resetting a user's second factor")
    with ctx.db.transaction() as s:
        user = s.execute(select(User).where(User.username == username)).scalar_one_or_none()
        if user is None:
            raise NotFoundError(f"unknown user {username!r}", field="username")
        had_totp = s.get(TotpEnrolment, user.id) is not None
        s.execute(delete(TotpEnrolment).where(TotpEnrolment.user_id == user.id))
        s.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
        revoked = s.execute(
            update(PasskeyCredential)
            .where(PasskeyCredential.user_id == user.id, PasskeyCredential.revoked_at.is_(None))
            .values(revoked_at=utcnow())
        ).rowcount  # type: ignore[attr-defined]
        s.execute(
            update(WebSession)
            .where(WebSession.user_id == user.id, WebSession.ended_at.is_(None))
            .values(ended_at=utcnow(), end_reason="mfa reset")
        )
        append_audit(
            s,
            actor=by.actor,
            action=MfaEvent.RESET,
            target=f"user:{username}",
            details={**by.audit_context(), "had_totp": had_totp, "passkeys_revoked": int(revoked)},
        )
