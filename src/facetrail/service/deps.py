"""FastAPI dependencies: the app context, the signed-in principal, permission checks, CSRF.

Routes declare what they need, e.g. ``who: Principal = Depends(require(Permission.SEARCH_RUN))``; a denial
is audited before it is refused.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable

from fastapi import Depends, Request

from facetrail.accounts import mfa
from facetrail.accounts.service import resolve_api_token, resolve_session
from facetrail.audit.refusals import audit_refusal, refuse
from facetrail.context import AppContext
from facetrail.errors import AuthenticationError, FaceTrailError, PermissionDeniedError
from facetrail.policy.principal import Principal
from facetrail.policy.roles import Permission, TokenScope
from facetrail.service.refusals import ACCESS_DENIED, request_target

SESSION_COOKIE = "facetrail_session"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# What a user who must change their password may still reach.
PASSWORD_CHANGE_PATHS = ("/api/v1/auth/password", "/api/v1/auth/logout", "/api/v1/auth/me", "/password", "/logout")
STEP_UP_PATH = "/api/v1/auth/mfa/verify"
# What a session that has not shown its second factor yet may still reach (enrolment, verification, sign-out).
SECOND_FACTOR_PATHS = (
    "/api/v1/auth/mfa",
    "/api/v1/auth/passkeys/assert",
    "/api/v1/auth/logout",
    "/api/v1/auth/me",
    "/mfa",
    "/logout",
)


class CsrfError(PermissionDeniedError):
    """A state-changing request without the session's CSRF token: refused and audited like a missing permission."""

    code = "csrf_failed"


class PasswordChangeRequiredError(PermissionDeniedError):
    code = "password_change_required"


def get_ctx(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


def client_ip(request: Request) -> str:
    return request.client.host if request.client else ""


def _refuse(request: Request, who: Principal | None, outcome: str, reason: str, error: FaceTrailError) -> None:
    audit_refusal(
        request.app.state.ctx,
        who or "anonymous",
        ACCESS_DENIED,
        request_target(request),
        error,
        details={"reason": reason},
        outcome=outcome,
    )


def optional_principal(request: Request, ctx: AppContext = Depends(get_ctx)) -> Principal | None:
    """The caller from a Bearer API token or the session cookie, or None. Sets request.state.csrf."""
    cached = getattr(request.state, "principal", None)
    if cached is not None:
        return cached
    ip, ua = client_ip(request), request.headers.get("user-agent", "")
    auth = request.headers.get("authorization", "")
    principal: Principal | None = None
    if auth[:7].lower() == "bearer ":
        principal = resolve_api_token(ctx, auth[7:].strip(), ip=ip, user_agent=ua)
        if principal is None:
            error = AuthenticationError("invalid, expired or revoked API token")
            _refuse(request, None, "unauthenticated", "invalid, expired or revoked API token", error)
            raise error
        request.state.csrf = None  # a bearer token is no ambient credential: no CSRF risk
    else:
        token = request.cookies.get(SESSION_COOKIE, "")
        resolved = resolve_session(ctx, token, ip=ip, user_agent=ua) if token else None
        if resolved is not None:
            principal, request.state.csrf = resolved
    request.state.principal = principal
    return principal


def current_principal(
    request: Request, ctx: AppContext = Depends(get_ctx), principal: Principal | None = Depends(optional_principal)
) -> Principal:
    if principal is None:
        error = AuthenticationError("sign in first (session cookie or 'Authorization: Bearer <API token>')")
        _refuse(request, None, "unauthenticated", "not signed in", error)
        raise error
    if principal.via == "session" and request.method not in SAFE_METHODS and request.url.path.startswith("/api/"):
        sent = request.headers.get(CSRF_HEADER, "")
        if not sent or not hmac.compare_digest(sent, request.state.csrf or ""):
            csrf = CsrfError(f"missing or wrong CSRF token (send the {CSRF_HEADER} header)")
            _refuse(request, principal, "denied", "missing or wrong CSRF token", csrf)
            raise csrf
    if (
        principal.via == "token"
        and principal.scope == TokenScope.READ
        and request.method not in SAFE_METHODS
        and request.url.path != STEP_UP_PATH  # presenting a second factor changes no data
    ):
        # Belt and braces over the per-permission scope check: a read-only token changes nothing anywhere.
        read_only = PermissionDeniedError("this API token is read-only (scope 'read')", scope=principal.scope)
        _refuse(request, principal, "denied", "read-only API token used for a change", read_only)
        raise read_only
    path = request.url.path
    if path.startswith(SECOND_FACTOR_PATHS):
        return principal  # enrolment and the code itself come before (or with) the password change
    if principal.must_change_password and not path.startswith(PASSWORD_CHANGE_PATHS):
        raise PasswordChangeRequiredError("you must change your password before doing anything else")
    try:  # an enrolled user shows the code before changing a (reset) password; a new user enrols after it
        mfa.check_gate(ctx, principal, enrolment_may_wait=principal.must_change_password)
    except mfa.SecondFactorRequiredError as exc:
        _refuse(request, principal, "unauthenticated", exc.code, exc)
        raise
    return principal


def check_form_csrf(request: Request, submitted: str | None) -> None:
    """For HTML form posts: the hidden field must match the session's token."""
    expected = getattr(request.state, "csrf", None) or ""
    if not submitted or not expected or not hmac.compare_digest(submitted, expected):
        # A forged cross-site post is an attack on the signed-in user: it is audited like every refusal.
        who: Principal | None = getattr(request.state, "principal", None)
        raise refuse(
            get_ctx(request),
            who if who is not None else "anonymous",
            "access.denied",
            f"{request.method} {request.url.path}",
            CsrfError("the form has expired or did not come from FaceTrail; reload the page and try again"),
            details={"reason": "missing or wrong CSRF token (form)"},
            outcome="denied",
        ) from None


def require(permission: Permission) -> Callable[..., Principal]:
    def dependency(
        request: Request, ctx: AppContext = Depends(get_ctx), who: Principal = Depends(current_principal)
    ) -> Principal:
        return require_any(permission)(request, ctx, who)

    dependency.__name__ = f"require_{permission.name.lower()}"
    return dependency


def require_any(*permissions: Permission) -> Callable[..., Principal]:
    """The caller, if their role holds at least one of ``permissions``; otherwise the refusal is audited
    ('access.denied', 'denied') and raised. Routes open to several permissions (e.g. the three ways to view
    searches) name them all."""

    def dependency(
        request: Request, ctx: AppContext = Depends(get_ctx), who: Principal = Depends(current_principal)
    ) -> Principal:
        if any(who.can(p) for p in permissions):
            return who
        names = [p.value for p in permissions]
        if len(permissions) == 1:
            reason = who.refusal_reason(permissions[0])
            error = PermissionDeniedError(reason, permission=names[0])
        else:
            error = PermissionDeniedError(f"role '{who.role}' may not do this", permissions=names)
            reason = f"role '{who.role}' lacks any of {', '.join(names)}"
        _refuse(request, who, "denied", reason, error)
        raise error

    dependency.__name__ = "require_any_" + "_".join(p.name.lower() for p in permissions)
    return dependency
