"""Second factors (TOTP, recovery codes, step-up) and sessions over the API. Thin over accounts.mfa and
accounts.sessions; docs/authentication.md describes the flows."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field

from facetrail.accounts import mfa, passkeys, sessions
from facetrail.accounts import service as accounts
from facetrail.context import AppContext
from facetrail.policy.principal import Principal
from facetrail.policy.roles import Permission
from facetrail.service.api._common import ERROR_RESPONSES, IdPath
from facetrail.service.api.auth import LoginResponse, me_of, set_session_cookie
from facetrail.service.deps import client_ip, current_principal, get_ctx, require

router = APIRouter(tags=["identity"], responses=ERROR_RESPONSES)
admin = require(Permission.USERS_MANAGE)


class MfaStatus(BaseModel):
    required: bool = Field(description="The caller's role must present a second factor at sign-in.")
    totp_enrolled: bool
    passkeys: int
    recovery_codes_left: int
    second_factor_at: dt.datetime | None = Field(description="When this session or token last showed one.")
    step_up_fresh_until: dt.datetime | None = Field(description="Sensitive acts pass without a new code until then.")


class TotpEnrolment(BaseModel):
    secret: str = Field(description="Base32 secret, for typing into an authenticator app.")
    otpauth_uri: str
    qr_svg: str = Field(description="The otpauth URI as an SVG QR code (data: URI).")
    issuer: str


class CodeBody(BaseModel):
    code: str = Field(min_length=1, max_length=64, description="A 6-digit TOTP code or a recovery code.")


class RecoveryCodes(BaseModel):
    recovery_codes: list[str] = Field(description="Shown once; each works once. Only their hashes are stored.")


class Verified(BaseModel):
    factor: str = Field(description="'totp' or 'recovery_code'")
    status: MfaStatus


class SessionInfo(BaseModel):
    id: int
    user: str
    created_at: dt.datetime
    last_seen_at: dt.datetime | None
    expires_at: dt.datetime | None
    ended_at: dt.datetime | None
    end_reason: str | None
    active: bool
    current: bool
    method: str
    second_factor: bool
    ip: str
    user_agent: str


class Ok(BaseModel):
    ok: bool = True


@router.get("/auth/mfa", response_model=MfaStatus, summary="My second factors and step-up state")
def mfa_status(ctx: AppContext = Depends(get_ctx), who: Principal = Depends(current_principal)) -> MfaStatus:
    return MfaStatus(**mfa.mfa_status(ctx, who))


@router.post("/auth/mfa/totp/enrol", response_model=TotpEnrolment, summary="Start TOTP enrolment (secret and QR code)")
def totp_enrol(ctx: AppContext = Depends(get_ctx), who: Principal = Depends(current_principal)) -> TotpEnrolment:
    return TotpEnrolment(**mfa.begin_totp_enrolment(ctx, who))


@router.post(
    "/auth/mfa/totp/confirm",
    response_model=RecoveryCodes,
    summary="Confirm TOTP enrolment with a code; returns the recovery codes (once)",
)
def totp_confirm(
    body: CodeBody, ctx: AppContext = Depends(get_ctx), who: Principal = Depends(current_principal)
) -> RecoveryCodes:
    return RecoveryCodes(recovery_codes=mfa.confirm_totp_enrolment(ctx, who, body.code))


@router.post(
    "/auth/mfa/verify",
    response_model=Verified,
    summary="Present a second factor: completes sign-in, or steps up this session or API token",
)
def verify(body: CodeBody, ctx: AppContext = Depends(get_ctx), who: Principal = Depends(current_principal)) -> Verified:
    before = mfa.factor_state(ctx, who)
    purpose = "step_up" if before.second_factor_at is not None or who.via == "token" else "sign_in"
    factor = mfa.verify_second_factor(ctx, who, body.code, purpose=purpose)
    return Verified(factor=factor, status=MfaStatus(**mfa.mfa_status(ctx, who)))


@router.post(
    "/auth/mfa/recovery-codes",
    response_model=RecoveryCodes,
    summary="Replace my recovery codes (needs a fresh second factor)",
)
def new_recovery_codes(
    ctx: AppContext = Depends(get_ctx), who: Principal = Depends(current_principal)
) -> RecoveryCodes:
    return RecoveryCodes(recovery_codes=mfa.regenerate_recovery_codes(ctx, who))


@router.get("/auth/sessions", response_model=list[SessionInfo], summary="My browser sessions")
def my_sessions(ctx: AppContext = Depends(get_ctx), who: Principal = Depends(current_principal)) -> list[SessionInfo]:
    return [SessionInfo(**x) for x in sessions.list_sessions(ctx, who)]


@router.delete("/auth/sessions/{session_id}", response_model=SessionInfo, summary="End one of my sessions")
def end_my_session(
    session_id: IdPath, ctx: AppContext = Depends(get_ctx), who: Principal = Depends(current_principal)
) -> SessionInfo:
    return SessionInfo(**sessions.end_session_by_id(ctx, who, session_id))


@router.get("/sessions", response_model=list[SessionInfo], summary="Every user's sessions (or one user's)")
def all_sessions(
    user: str | None = None, ctx: AppContext = Depends(get_ctx), who: Principal = Depends(admin)
) -> list[SessionInfo]:
    return [SessionInfo(**x) for x in sessions.list_sessions(ctx, who, username=user, all_users=user is None)]


@router.delete("/sessions/{session_id}", response_model=SessionInfo, summary="End any user's session")
def end_any_session(
    session_id: IdPath, ctx: AppContext = Depends(get_ctx), who: Principal = Depends(admin)
) -> SessionInfo:
    return SessionInfo(**sessions.end_session_by_id(ctx, who, session_id))


@router.delete(
    "/users/{username}/mfa",
    response_model=Ok,
    summary="Reset a user's second factors (needs a fresh second factor; the user enrols again)",
)
def reset_mfa(username: str, ctx: AppContext = Depends(get_ctx), who: Principal = Depends(admin)) -> Ok:
    mfa.reset_mfa(ctx, who, username)
    return Ok()


# --- passkeys ---------------------------------------------------------------------------------------------


def relying_party(ctx: AppContext, request: Request) -> tuple[str, str]:
    """(rp id, expected origin): from settings, else from the address the browser used."""
    origin = ctx.settings.mfa.passkey_origin or f"{request.url.scheme}://{request.url.netloc}"
    return ctx.settings.mfa.passkey_rp_id or (request.url.hostname or ""), origin


class PasskeyInfo(BaseModel):
    id: int
    name: str
    created_at: dt.datetime
    last_used_at: dt.datetime | None
    revoked: bool


class PasskeyRegistration(BaseModel):
    name: str = Field(min_length=1, max_length=200, description="What the passkey is, e.g. 'office security key'.")
    credential: dict[str, Any] = Field(description="The browser's PublicKeyCredential, as JSON (base64url fields).")


class PasskeyAssertion(BaseModel):
    credential: dict[str, Any]


@router.get("/auth/passkeys", response_model=list[PasskeyInfo], summary="My passkeys")
def my_passkeys(ctx: AppContext = Depends(get_ctx), who: Principal = Depends(current_principal)) -> list[PasskeyInfo]:
    return [PasskeyInfo(**p) for p in passkeys.list_passkeys(ctx, who)]


@router.post(
    "/auth/passkeys/register/options", summary="Options for navigator.credentials.create (needs a fresh factor)"
)
def passkey_register_options(
    request: Request, ctx: AppContext = Depends(get_ctx), who: Principal = Depends(current_principal)
) -> dict[str, Any]:
    return passkeys.registration_options(ctx, who, relying_party(ctx, request)[0])


@router.post("/auth/passkeys", response_model=PasskeyInfo, status_code=201, summary="Register a passkey")
def passkey_register(
    body: PasskeyRegistration,
    request: Request,
    ctx: AppContext = Depends(get_ctx),
    who: Principal = Depends(current_principal),
) -> PasskeyInfo:
    rp_id, origin = relying_party(ctx, request)
    return PasskeyInfo(**passkeys.register(ctx, who, body.name, body.credential, rp_id=rp_id, origin=origin))


@router.delete("/auth/passkeys/{passkey_id}", response_model=PasskeyInfo, summary="Revoke one of my passkeys")
def passkey_revoke(
    passkey_id: IdPath, ctx: AppContext = Depends(get_ctx), who: Principal = Depends(current_principal)
) -> PasskeyInfo:
    return PasskeyInfo(**passkeys.revoke(ctx, who, passkey_id))


@router.post("/auth/passkeys/assert/options", summary="Options for navigator.credentials.get (second factor)")
def passkey_assert_options(
    request: Request, ctx: AppContext = Depends(get_ctx), who: Principal = Depends(current_principal)
) -> dict[str, Any]:
    return passkeys.assertion_options(ctx, relying_party(ctx, request)[0], who)


@router.post("/auth/passkeys/assert", response_model=MfaStatus, summary="A passkey as second factor or step-up")
def passkey_assert(
    body: PasskeyAssertion,
    request: Request,
    ctx: AppContext = Depends(get_ctx),
    who: Principal = Depends(current_principal),
) -> MfaStatus:
    rp_id, origin = relying_party(ctx, request)
    passkeys.verify_second_factor(ctx, who, body.credential, rp_id=rp_id, origin=origin)
    return MfaStatus(**mfa.mfa_status(ctx, who))


@router.post("/auth/passkeys/login/options", summary="Options for a passwordless sign-in (discoverable passkey)")
def passkey_login_options(request: Request, ctx: AppContext = Depends(get_ctx)) -> dict[str, Any]:
    return passkeys.assertion_options(ctx, relying_party(ctx, request)[0])


@router.post("/auth/passkeys/login", response_model=LoginResponse, summary="Passwordless sign-in with a passkey")
def passkey_login(
    body: PasskeyAssertion, request: Request, response: Response, ctx: AppContext = Depends(get_ctx)
) -> LoginResponse:
    rp_id, origin = relying_party(ctx, request)
    who = passkeys.passwordless_sign_in(
        ctx,
        body.credential,
        rp_id=rp_id,
        origin=origin,
        ip=client_ip(request),
        user_agent=request.headers.get("user-agent", ""),
    )
    token, csrf = accounts.create_session(ctx, who, method="passkey")
    opened = accounts.resolve_session(ctx, token, ip=who.ip, user_agent=who.user_agent)
    assert opened is not None
    mfa.mark_second_factor(ctx, opened[0])  # user verification on the device: both factors at once
    set_session_cookie(ctx, request, response, token)
    return LoginResponse(user=me_of(who), csrf_token=csrf, second_factor="done")
