"""Single sign-on with OpenID Connect: authorization-code flow with PKCE, against the agency's provider.

Guarantees:
- ``state`` (against login CSRF), ``nonce`` (against ID-token replay) and the PKCE verifier are random per
  sign-in, kept in a short-lived HttpOnly cookie of the browser that started it, and checked on return.
- The ID token's signature is checked against the provider's JWKS (asymmetric algorithms only: never
  ``none``, never a shared-secret HMAC), and its issuer, audience, nonce, expiry and issue time are validated.
- Roles and units come only from ``oidc.mappings`` (claim value → role, unit; first match wins). A user is
  provisioned only when a mapping matches; nobody signs themselves up. A user whose mapping has gone is refused
  at the next sign-in and their sessions end and API tokens are revoked. A local account of the same username is
  never taken over by the provider (refused: an administrator links or renames).
- SSO users have no usable password; every sign-in (ok or refused, and why) is audited with the address.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import urlencode

import httpx
from authlib.jose import JsonWebKey, JsonWebToken
from authlib.jose.errors import JoseError
from sqlalchemy import select, update

from facetrail.accounts.service import principal_for
from facetrail.audit.log import append_audit
from facetrail.config import OidcRoleMapping, OidcSettings
from facetrail.context import AppContext
from facetrail.errors import FaceTrailError
from facetrail.policy.principal import Principal
from facetrail.policy.roles import AuthenticationError, Role
from facetrail.storage.models import ApiToken, Unit, User, WebSession, utcnow

ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"]
FLOW_SECONDS = 600
UNUSABLE_PASSWORD = "!sso"  # noqa: S105 - not a hash: no password verifies against it


class SsoEvent(StrEnum):
    LOGIN = "auth.sso_login"
    PROVISION = "user.sso_provision"
    DEPROVISION = "user.sso_deprovision"


class SsoError(AuthenticationError):
    """Single sign-on refused; ``code`` says why (stable)."""

    code = "sso_failed"


class SsoStateError(SsoError):
    code = "sso_state_mismatch"


class SsoTokenError(SsoError):
    code = "sso_id_token_invalid"


class SsoNotMappedError(SsoError):
    code = "sso_not_mapped"


class SsoConfigError(FaceTrailError):
    code = "sso_not_configured"
    http_status = 404


@dataclass(frozen=True)
class Flow:
    state: str
    nonce: str
    verifier: str
    started: int

    def cookie(self) -> str:
        return f"{self.state}.{self.nonce}.{self.verifier}.{self.started}"

    @classmethod
    def parse(cls, text: str) -> Flow | None:
        parts = (text or "").split(".")
        if len(parts) != 4 or not parts[3].isdigit():
            return None
        return cls(parts[0], parts[1], parts[2], int(parts[3]))


def _settings(ctx: AppContext) -> OidcSettings:
    oidc = ctx.settings.oidc
    if not oidc.enabled or not oidc.issuer or not oidc.client_id:
        raise SsoConfigError("single sign-on is not configured (oidc.enabled, oidc.issuer, oidc.client_id)")
    return oidc


def _discovery(ctx: AppContext, *, refresh: bool = False) -> dict[str, Any]:
    """The provider's metadata and keys, fetched once per process (again when a key id is unknown)."""
    oidc = _settings(ctx)
    cache = ctx.extras.get("oidc_discovery")
    if cache is not None and not refresh and cache["issuer_setting"] == oidc.issuer:
        return dict(cache)
    url = oidc.issuer.rstrip("/") + "/.well-known/openid-configuration"
    meta = httpx.get(url, timeout=10).raise_for_status().json()
    if meta.get("issuer") != oidc.issuer:
        raise SsoConfigError(f"the provider's discovery document names issuer {meta.get('issuer')!r}")
    meta["jwks"] = httpx.get(meta["jwks_uri"], timeout=10).raise_for_status().json()
    meta["issuer_setting"] = oidc.issuer
    ctx.extras["oidc_discovery"] = meta
    return dict(meta)


def begin(ctx: AppContext, redirect_uri: str) -> tuple[str, Flow]:
    """The provider's authorization URL for a new sign-in, and the flow to keep in the browser's cookie."""
    oidc = _settings(ctx)
    meta = _discovery(ctx)
    flow = Flow(secrets.token_urlsafe(24), secrets.token_urlsafe(24), secrets.token_urlsafe(48), int(time.time()))
    challenge = base64.urlsafe_b64encode(hashlib.sha256(flow.verifier.encode()).digest()).rstrip(b"=").decode()
    query = {
        "response_type": "code",
        "client_id": oidc.client_id,
        "redirect_uri": oidc.redirect_uri or redirect_uri,
        "scope": " ".join(oidc.scopes),
        "state": flow.state,
        "nonce": flow.nonce,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    return f"{meta['authorization_endpoint']}?{urlencode(query)}", flow


def validate_id_token(ctx: AppContext, id_token: str, nonce: str) -> dict[str, Any]:
    """Signature (provider JWKS), issuer, audience, nonce, expiry: the claims, or SsoTokenError."""
    oidc = _settings(ctx)
    jwt = JsonWebToken(ALGORITHMS)
    options = {
        "iss": {"essential": True, "value": oidc.issuer},
        "aud": {"essential": True, "value": oidc.client_id},
        "nonce": {"essential": True, "value": nonce},
        "sub": {"essential": True},
        "exp": {"essential": True},
        "iat": {"essential": True},
    }
    for attempt in (0, 1):
        keys = JsonWebKey.import_key_set(_discovery(ctx, refresh=attempt == 1)["jwks"])
        try:
            claims = jwt.decode(id_token, keys, claims_options=options)
            claims.validate(leeway=oidc.clock_skew_seconds)
        except ValueError as exc:  # an unknown key id: the provider may have rotated its keys
            if attempt == 0 and "kid" in str(exc).lower():
                continue
            raise SsoTokenError(f"the ID token is not valid: {exc}") from None
        except JoseError as exc:
            raise SsoTokenError(f"the ID token is not valid: {exc.error}: {exc.description or ''}".strip()) from None
        aud = claims.get("aud")
        if isinstance(aud, list) and len(aud) > 1 and claims.get("azp") != oidc.client_id:
            raise SsoTokenError("the ID token was issued to another party (azp)")
        return dict(claims)
    raise SsoTokenError("the ID token is signed with an unknown key")


def _claim_values(claims: dict[str, Any], name: str) -> list[str]:
    value = claims.get(name)
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [str(v) for v in value]
    return []


def mapping_for(oidc: OidcSettings, claims: dict[str, Any]) -> OidcRoleMapping | None:
    for mapping in oidc.mappings:
        if mapping.value in _claim_values(claims, mapping.claim):
            return mapping
    return None


def complete(
    ctx: AppContext,
    *,
    code: str,
    state: str,
    flow_cookie: str,
    redirect_uri: str,
    ip: str = "",
    user_agent: str = "",
) -> Principal:
    """The provider sent the browser back: check state, redeem the code (with the PKCE verifier), validate the ID
    token, map its claims, provision or update the user. Returns the signed-in principal (first factor)."""
    oidc = _settings(ctx)
    meta_audit = {"ip": ip, "user_agent": user_agent[:300], "issuer": oidc.issuer}
    flow = Flow.parse(flow_cookie)
    try:
        if flow is None or time.time() - flow.started > FLOW_SECONDS:
            raise SsoStateError("the sign-in took too long or did not start here; start again")
        if not state or not hmac.compare_digest(state, flow.state):
            raise SsoStateError("the sign-in answer does not belong to this browser's sign-in (state)")
        meta = _discovery(ctx)
        response = httpx.post(
            meta["token_endpoint"],
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": oidc.redirect_uri or redirect_uri,
                "code_verifier": flow.verifier,
            },
            auth=(oidc.client_id, oidc.client_secret),
            timeout=15,
        )
        if response.status_code != 200:
            raise SsoError(f"the provider refused the authorization code ({response.status_code})")
        id_token = response.json().get("id_token")
        if not isinstance(id_token, str):
            raise SsoTokenError("the provider sent no ID token")
        claims = validate_id_token(ctx, id_token, flow.nonce)
    except SsoError as exc:
        _audit_refusal(ctx, "anonymous", exc, meta_audit)
        raise
    return _sign_in(ctx, oidc, claims, ip, user_agent, meta_audit)


def _audit_refusal(ctx: AppContext, actor: str, exc: SsoError, details: dict[str, Any]) -> None:
    with ctx.db.transaction() as s:
        append_audit(
            s,
            actor=actor,
            action=SsoEvent.LOGIN,
            target=actor if actor != "anonymous" else "sso",
            outcome="refused",
            details={**details, "reason": exc.code, "message": exc.message[:300]},
        )


def _sign_in(
    ctx: AppContext, oidc: OidcSettings, claims: dict[str, Any], ip: str, user_agent: str, meta: dict[str, Any]
) -> Principal:
    subject = str(claims["sub"])
    username = str(claims.get(oidc.username_claim) or "").strip().lower()[:64]
    mapping = mapping_for(oidc, claims)
    details = {**meta, "subject": subject}
    with ctx.db.transaction() as s:
        user = s.execute(select(User).where(User.external_subject == subject)).scalar_one_or_none()
        if mapping is None:
            if user is not None:  # the mapping has gone: no more access, anywhere
                now = utcnow()
                s.execute(
                    update(WebSession)
                    .where(WebSession.user_id == user.id, WebSession.ended_at.is_(None))
                    .values(ended_at=now, end_reason="single sign-on mapping removed")
                )
                s.execute(
                    update(ApiToken)
                    .where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None))
                    .values(revoked_at=now)
                )
                append_audit(
                    s, actor="system", action=SsoEvent.DEPROVISION, target=f"user:{user.username}", details=details
                )
            error: SsoError = SsoNotMappedError("your account at the identity provider grants no access to FaceTrail")
        elif user is None and not username:
            error = SsoError(f"the ID token has no {oidc.username_claim!r} claim to name the account")
        else:
            unit_id = None
            if mapping.unit:
                unit = s.execute(select(Unit).where(Unit.name == mapping.unit)).scalar_one_or_none()
                if unit is None:
                    raise SsoConfigError(f"oidc.mappings names unit {mapping.unit!r}, which does not exist")
                unit_id = unit.id
            role = Role(mapping.role).value
            if user is None:
                taken = s.execute(select(User).where(User.username == username)).scalar_one_or_none()
                if taken is not None:
                    error = SsoError(f"a local account {username!r} exists; an administrator must link it first")
                else:
                    user = User(
                        username=username,
                        display_name=str(claims.get("name") or "")[:200],
                        role=role,
                        unit_id=unit_id,
                        password_hash=UNUSABLE_PASSWORD,
                        must_change_password=False,
                        external_subject=subject,
                        created_by="sso",
                    )
                    s.add(user)
                    s.flush()
                    append_audit(
                        s,
                        actor="system",
                        action=SsoEvent.PROVISION,
                        target=f"user:{username}",
                        details={**details, "role": role, "unit": mapping.unit, "mapping": mapping.value},
                    )
            if user is not None:
                if user.disabled:
                    error = SsoError("this account is disabled")
                else:
                    changed = {"role": role} if user.role != role else {}
                    if user.unit_id != unit_id:
                        changed["unit"] = mapping.unit or ""
                    user.role, user.unit_id = role, unit_id
                    append_audit(
                        s,
                        actor=f"user:{user.username}",
                        action=SsoEvent.LOGIN,
                        target=f"user:{user.username}",
                        details={**details, "role": role, "unit": mapping.unit, "changed": changed},
                    )
                    s.flush()
                    s.refresh(user)
                    return principal_for(user, "session", ip, user_agent)
    _audit_refusal(ctx, f"user:{username}" if username else "anonymous", error, details)
    raise error
