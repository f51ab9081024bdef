"""Sign-in, sign-out, password change and the caller's own API tokens."""

from __future__ import annotations

import datetime as dt

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field

from facetrail.accounts import mfa
from facetrail.accounts import service as accounts
from facetrail.context import AppContext
from facetrail.policy.principal import Principal
from facetrail.service.api._common import ERROR_RESPONSES
from facetrail.service.deps import SESSION_COOKIE, client_ip, current_principal, get_ctx

router = APIRouter(prefix="/auth", tags=["auth"], responses=ERROR_RESPONSES)


class LoginRequest(BaseModel):
    username: str = Field(min_length=1, max_length=100)
    password: str = Field(min_length=1, max_length=1024)


class Me(BaseModel):
    username: str
    role: str
    unit: str | None
    must_change_password: bool
    via: str


class LoginResponse(BaseModel):
    user: Me
    csrf_token: str = Field(description="Send it as the X-CSRF-Token header on state-changing API calls.")
    second_factor: str = Field(
        "not_required",
        description="'required': POST /auth/mfa/verify next; 'enrolment_required': enrol first "
        "(POST /auth/mfa/totp/enrol, then /auth/mfa/totp/confirm); 'not_required': the role need not use MFA; "
        "'done': shown already (a passkey sign-in with user verification).",
    )


class PasswordChange(BaseModel):
    current_password: str = Field(min_length=1, max_length=1024)
    new_password: str = Field(min_length=1, max_length=1024)


class TokenCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    days: int | None = Field(None, ge=1, le=3650, description="Lifetime in days (default and maximum from settings).")
    scope: str | None = Field(
        None,
        max_length=20,
        description="read (look only), search (read + run searches, verify, detect) or full (everything the "
        "role allows). Default: settings auth.default_token_scope ('read').",
    )


class TokenInfo(BaseModel):
    id: int
    name: str
    prefix: str
    user: str | None
    created_at: dt.datetime
    expires_at: dt.datetime
    revoked: bool
    last_used_at: dt.datetime | None
    scope: str


class TokenCreated(BaseModel):
    token: TokenInfo
    secret: str = Field(description="Shown once. Only its hash is stored.")


class Ok(BaseModel):
    ok: bool = True


def me_of(p: Principal) -> Me:
    return Me(
        username=p.username, role=p.role, unit=p.unit_name, must_change_password=p.must_change_password, via=p.via
    )


def set_session_cookie(ctx: AppContext, request: Request, response: Response, token: str) -> None:
    secure = ctx.settings.auth.cookie_secure
    if secure is None:
        secure = request.url.scheme == "https"
    response.set_cookie(
        SESSION_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=secure,
        path="/",
        max_age=int(ctx.settings.auth.session_hours * 3600),
    )


@router.post("/login", response_model=LoginResponse, summary="Sign in; sets the session cookie")
def login(
    body: LoginRequest, request: Request, response: Response, ctx: AppContext = Depends(get_ctx)
) -> LoginResponse:
    who = accounts.authenticate(
        ctx, body.username, body.password, ip=client_ip(request), user_agent=request.headers.get("user-agent", "")
    )
    token, csrf = accounts.create_session(ctx, who)
    set_session_cookie(ctx, request, response, token)
    state = mfa.factor_state(ctx, who)
    second = "not_required" if not state.required else ("required" if state.enrolled else "enrolment_required")
    return LoginResponse(user=me_of(who), csrf_token=csrf, second_factor=second)


@router.post("/logout", response_model=Ok, summary="Sign out (ends the session)")
def logout(
    request: Request,
    response: Response,
    ctx: AppContext = Depends(get_ctx),
    who: Principal = Depends(current_principal),
) -> Ok:
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        accounts.end_session(ctx, token, who)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return Ok()


@router.get("/me", response_model=Me, summary="Who am I")
def me(who: Principal = Depends(current_principal)) -> Me:
    return me_of(who)


@router.post("/password", response_model=Ok, summary="Change my password")
def change_password(
    body: PasswordChange, ctx: AppContext = Depends(get_ctx), who: Principal = Depends(current_principal)
) -> Ok:
    accounts.change_password(ctx, who, body.current_password, body.new_password)
    return Ok()


@router.get("/tokens", response_model=list[TokenInfo], summary="My API tokens")
def list_tokens(ctx: AppContext = Depends(get_ctx), who: Principal = Depends(current_principal)) -> list[TokenInfo]:
    return [TokenInfo(**t) for t in accounts.list_api_tokens(ctx, who)]


@router.post("/tokens", response_model=TokenCreated, status_code=201, summary="Create an API token (shown once)")
def create_token(
    body: TokenCreate, ctx: AppContext = Depends(get_ctx), who: Principal = Depends(current_principal)
) -> TokenCreated:
    info, secret = accounts.create_api_token(ctx, who, body.name, body.days, body.scope)
    return TokenCreated(token=TokenInfo(**info), secret=secret)


@router.delete("/tokens/{token_id}", response_model=TokenInfo, summary="Revoke an API token")
def revoke_token(
    token_id: int, ctx: AppContext = Depends(get_ctx), who: Principal = Depends(current_principal)
) -> TokenInfo:
    return TokenInfo(**accounts.revoke_api_token(ctx, who, token_id))
