"""Passkeys (WebAuthn): several per user, named and revocable; a second factor, or a passwordless sign-in.

Guarantees:
- Challenges are random, single-use (an atomic conditional UPDATE), expire after five minutes, and are bound to
  the user they were made for (or to nobody, for a passwordless sign-in, where the credential names the user).
- Registration and assertions are verified by the ``webauthn`` package against this server's relying-party id
  and origin (the browser's origin must be exactly the server's); an assertion made for another origin, replayed
  or signed by an unknown or revoked credential is refused and audited.
- Adding a passkey is a step-up act (it adds a factor); revoking one is audited. A passwordless sign-in needs
  user verification (PIN or biometric on the device), so it counts as both factors.
- The sign counter must increase when the authenticator keeps one (a cloned authenticator is refused).
"""

from __future__ import annotations

import datetime as dt
import json
from enum import StrEnum
from typing import Any

import webauthn
from sqlalchemy import select, update
from webauthn.helpers import bytes_to_base64url
from webauthn.helpers.exceptions import InvalidAuthenticationResponse, InvalidRegistrationResponse
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from facetrail.accounts import mfa
from facetrail.accounts.service import _aware, principal_for
from facetrail.audit.log import append_audit
from facetrail.context import AppContext
from facetrail.errors import BadInputError, NotFoundError
from facetrail.policy.principal import Principal
from facetrail.policy.roles import AuthenticationError
from facetrail.storage.models import PasskeyCredential, User, WebAuthnChallenge, utcnow

CHALLENGE_SECONDS = 300


class PasskeyEvent(StrEnum):
    REGISTER = "passkey.register"
    REVOKE = "passkey.revoke"
    ASSERT = "auth.passkey"


class PasskeyError(AuthenticationError):
    code = "passkey_refused"


def _new_challenge(ctx: AppContext, purpose: str, user_id: int | None) -> bytes:
    import secrets

    raw = secrets.token_bytes(32)
    with ctx.db.transaction() as s:
        s.add(WebAuthnChallenge(challenge=bytes_to_base64url(raw), purpose=purpose, user_id=user_id))
    return raw


def _take_challenge(ctx: AppContext, credential: dict[str, Any], purpose: str, user_id: int | None) -> bytes:
    """The challenge the browser signed, if this server issued it for this purpose and user and it is unused."""
    try:
        client_data = json.loads(webauthn.base64url_to_bytes(credential["response"]["clientDataJSON"]))
        challenge = str(client_data["challenge"])
    except (KeyError, TypeError, ValueError):
        raise PasskeyError("malformed WebAuthn response") from None
    cutoff = utcnow() - dt.timedelta(seconds=CHALLENGE_SECONDS)
    with ctx.db.transaction() as s:
        query = update(WebAuthnChallenge).where(
            WebAuthnChallenge.challenge == challenge,
            WebAuthnChallenge.purpose == purpose,
            WebAuthnChallenge.used_at.is_(None),
            WebAuthnChallenge.created_at > cutoff,
        )
        query = query.where(
            WebAuthnChallenge.user_id == user_id if user_id is not None else WebAuthnChallenge.user_id.is_(None)
        )
        if s.execute(query.values(used_at=utcnow())).rowcount != 1:  # type: ignore[attr-defined]
            raise PasskeyError("unknown, used or expired challenge: start again")
    return webauthn.base64url_to_bytes(challenge)


def _audit(ctx: AppContext, actor: str, action: str, target: str, outcome: str = "ok", **details: Any) -> None:
    with ctx.db.transaction() as s:
        append_audit(s, actor=actor, action=action, target=target, outcome=outcome, details=details)


# --- registration -----------------------------------------------------------------------------------------


def registration_options(ctx: AppContext, who: Principal, rp_id: str) -> dict[str, Any]:
    if who.user_id is None:
        raise AuthenticationError("not signed in")
    mfa.require_fresh_second_factor(ctx, who, "adding a passkey")
    with ctx.db.read() as s:
        existing = [
            PublicKeyCredentialDescriptor(id=webauthn.base64url_to_bytes(c.credential_id))
            for c in s.execute(
                select(PasskeyCredential).where(
                    PasskeyCredential.user_id == who.user_id, PasskeyCredential.revoked_at.is_(None)
                )
            ).scalars()
        ]
    options = webauthn.generate_registration_options(
        rp_id=rp_id,
        rp_name=ctx.settings.mfa.issuer,
        user_name=who.username,
        user_id=str(who.user_id).encode(),
        user_display_name=who.username,
        challenge=_new_challenge(ctx, "register", who.user_id),
        exclude_credentials=existing,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.PREFERRED, user_verification=UserVerificationRequirement.PREFERRED
        ),
    )
    return dict(json.loads(webauthn.options_to_json(options)))


def register(
    ctx: AppContext, who: Principal, name: str, credential: dict[str, Any], *, rp_id: str, origin: str
) -> dict[str, Any]:
    if who.user_id is None:
        raise AuthenticationError("not signed in")
    name = (name or "").strip()
    if not name or len(name) > 200 or any(ord(c) < 32 for c in name):
        raise BadInputError("name the passkey (1-200 characters)", field="name")
    challenge = _take_challenge(ctx, credential, "register", who.user_id)
    try:
        verified = webauthn.verify_registration_response(
            credential=credential, expected_challenge=challenge, expected_rp_id=rp_id, expected_origin=origin
        )
    except InvalidRegistrationResponse as exc:
        _audit(ctx, who.actor, PasskeyEvent.REGISTER, f"user:{who.username}", "refused", reason=str(exc)[:300])
        raise PasskeyError(f"the passkey could not be registered: {exc}") from None
    with ctx.db.transaction() as s:
        row = PasskeyCredential(
            user_id=who.user_id,
            name=name,
            credential_id=bytes_to_base64url(verified.credential_id),
            public_key=verified.credential_public_key,
            sign_count=verified.sign_count,
            transports=[str(t) for t in credential.get("response", {}).get("transports", []) or []][:10],
        )
        s.add(row)
        s.flush()
        append_audit(
            s,
            actor=who.actor,
            action=PasskeyEvent.REGISTER,
            target=f"user:{who.username}",
            details={"passkey": row.id, "name": name, **who.audit_context()},
        )
        return passkey_dict(row)


def passkey_dict(row: PasskeyCredential) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "created_at": _aware(row.created_at),
        "last_used_at": _aware(row.last_used_at),
        "revoked": row.revoked_at is not None,
    }


def list_passkeys(ctx: AppContext, who: Principal) -> list[dict[str, Any]]:
    with ctx.db.read() as s:
        rows = s.execute(
            select(PasskeyCredential).where(PasskeyCredential.user_id == who.user_id).order_by(PasskeyCredential.id)
        ).scalars()
        return [passkey_dict(r) for r in rows]


def revoke(ctx: AppContext, who: Principal, passkey_id: int) -> dict[str, Any]:
    with ctx.db.transaction() as s:
        row = s.get(PasskeyCredential, passkey_id)
        if row is None or row.user_id != who.user_id:
            raise NotFoundError(f"no passkey {passkey_id}")
        if row.revoked_at is None:
            row.revoked_at = utcnow()
        append_audit(
            s,
            actor=who.actor,
            action=PasskeyEvent.REVOKE,
            target=f"user:{who.username}",
            details={"passkey": row.id, "name": row.name, **who.audit_context()},
        )
        return passkey_dict(row)


# --- assertions: second factor and passwordless sign-in ---------------------------------------------------


def assertion_options(ctx: AppContext, rp_id: str, who: Principal | None = None) -> dict[str, Any]:
    """For a second factor (``who`` given: that user's passkeys) or a passwordless sign-in (discoverable)."""
    allow: list[PublicKeyCredentialDescriptor] = []
    if who is not None:
        with ctx.db.read() as s:
            allow = [
                PublicKeyCredentialDescriptor(id=webauthn.base64url_to_bytes(c.credential_id))
                for c in s.execute(
                    select(PasskeyCredential).where(
                        PasskeyCredential.user_id == who.user_id, PasskeyCredential.revoked_at.is_(None)
                    )
                ).scalars()
            ]
        if not allow:
            raise BadInputError("no passkey is registered for this account")
    options = webauthn.generate_authentication_options(
        rp_id=rp_id,
        challenge=_new_challenge(ctx, "second_factor" if who else "sign_in", who.user_id if who else None),
        allow_credentials=allow or None,
        user_verification=UserVerificationRequirement.REQUIRED
        if who is None
        else UserVerificationRequirement.PREFERRED,
    )
    return dict(json.loads(webauthn.options_to_json(options)))


def _verify_assertion(
    ctx: AppContext,
    credential: dict[str, Any],
    *,
    purpose: str,
    user_id: int | None,
    rp_id: str,
    origin: str,
    ip: str,
    user_agent: str,
) -> User:
    challenge = _take_challenge(ctx, credential, purpose, user_id)
    credential_id = str(credential.get("id") or credential.get("rawId") or "")[:1400]
    with ctx.db.read() as s:
        row = s.execute(
            select(PasskeyCredential).where(PasskeyCredential.credential_id == credential_id)
        ).scalar_one_or_none()
        found = (row.id, row.user_id, bytes(row.public_key), row.sign_count, row.revoked_at) if row else None
    meta = {"ip": ip, "user_agent": user_agent[:300], "purpose": purpose}
    if found is None or found[4] is not None or (user_id is not None and found[1] != user_id):
        _audit(ctx, "anonymous", PasskeyEvent.ASSERT, "passkey", "refused", reason="unknown or revoked passkey", **meta)
        raise PasskeyError("unknown or revoked passkey")
    row_id, owner, public_key, sign_count, _revoked = found
    try:
        verified = webauthn.verify_authentication_response(
            credential=credential,
            expected_challenge=challenge,
            expected_rp_id=rp_id,
            expected_origin=origin,
            credential_public_key=public_key,
            credential_current_sign_count=sign_count,
            require_user_verification=purpose == "sign_in",
        )
    except InvalidAuthenticationResponse as exc:
        _audit(ctx, "anonymous", PasskeyEvent.ASSERT, f"passkey:{row_id}", "refused", reason=str(exc)[:300], **meta)
        raise PasskeyError(f"the passkey's answer was refused: {exc}") from None
    with ctx.db.transaction() as s:
        s.execute(
            update(PasskeyCredential)
            .where(PasskeyCredential.id == row_id)
            .values(sign_count=verified.new_sign_count, last_used_at=utcnow())
        )
        user = s.get(User, owner)
        assert user is not None
        append_audit(
            s, actor=f"user:{user.username}", action=PasskeyEvent.ASSERT, target=f"passkey:{row_id}", details=meta
        )
        s.flush()
        s.refresh(user)
        s.expunge(user)
        return user


def verify_second_factor(
    ctx: AppContext, who: Principal, credential: dict[str, Any], *, rp_id: str, origin: str
) -> None:
    """A passkey as the session's (or token's) second factor: sign-in or step-up."""
    if who.user_id is None:
        raise AuthenticationError("not signed in")
    _verify_assertion(
        ctx,
        credential,
        purpose="second_factor",
        user_id=who.user_id,
        rp_id=rp_id,
        origin=origin,
        ip=who.ip,
        user_agent=who.user_agent,
    )
    mfa.mark_second_factor(ctx, who)


def passwordless_sign_in(
    ctx: AppContext, credential: dict[str, Any], *, rp_id: str, origin: str, ip: str, user_agent: str
) -> Principal:
    """A discoverable passkey with user verification: both factors at once. Returns the principal to open a
    session for (the caller marks the session's second factor)."""
    user = _verify_assertion(
        ctx, credential, purpose="sign_in", user_id=None, rp_id=rp_id, origin=origin, ip=ip, user_agent=user_agent
    )
    if user.disabled or (user.locked_until and _aware(user.locked_until) > utcnow()):  # type: ignore[operator]
        raise PasskeyError("this account is disabled or locked")
    with ctx.db.read() as s:
        fresh = s.get(User, user.id)
        assert fresh is not None
        return principal_for(fresh, "session", ip, user_agent)
