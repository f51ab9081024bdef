"""Second factors (TOTP, recovery codes, step-up) and sessions over the API. Thin over accounts.mfa and
accounts.sessions; docs/authentication.md describes the flows."""

from __future__ import annotations

import datetime as dt

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from facetrail.accounts import mfa, sessions
from facetrail.accounts.service import Principal
from facetrail.context import AppContext
from facetrail.policy.roles import Permission
from facetrail.service.api._common import ERROR_RESPONSES, IdPath
from facetrail.service.deps import current_principal, get_ctx, require

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
