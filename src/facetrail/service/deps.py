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
from facetrail.audit.log import append_audit
from facetrail.audit.refusals import refuse
from facetrail.context import AppContext
from facetrail.errors import AuthenticationError, FaceTrailError, PermissionDeniedError
from facetrail.policy.principal import Principal
from facetrail.policy.roles import Permission, TokenScope

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


class CsrfError(FaceTrailError):
    code = "csrf_failed"
    http_status = 403  # a refused request, like any other missing permission


class PasswordChangeRequiredError(PermissionDeniedError):
    code = "password_change_required"


def get_ctx(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


def client_ip(request: Request) -> str:
    return request.client.host if request.client else ""


def _audit_refusal(ctx: AppContext, request: Request, actor: str, outcome: str, reason: str) -> None:
    with ctx.db.transaction() as s:
        append_audit(
            s,
            actor=actor,
            action="access.denied",
            target=f"{request.method} {request.url.path}"[:300],
            outcome=outcome,
            details={"reason": reason},
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
            _audit_refusal(ctx, request, "anonymous", "unauthenticated", "invalid, expired or revoked API token")
            raise AuthenticationError("invalid, expired or revoked API token")
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
        _audit_refusal(ctx, request, "anonymous", "unauthenticated", "not signed in")
        raise AuthenticationError("sign in first (session cookie or 'Authorization: Bearer <API token>')")
    if principal.via == "session" and request.method not in SAFE_METHODS and request.url.path.startswith("/api/"):
        sent = request.headers.get(CSRF_HEADER, "")
        if not sent or not hmac.compare_digest(sent, request.state.csrf or ""):
            _audit_refusal(ctx, request, principal.actor, "denied", "missing or wrong CSRF token")
            raise CsrfError(f"missing or wrong CSRF token (send the {CSRF_HEADER} header)")
    if (
        principal.via == "token"
        and principal.scope == TokenScope.READ
        and request.method not in SAFE_METHODS
        and request.url.path != STEP_UP_PATH  # presenting a second factor changes no data
    ):
        # Belt and braces over the per-permission scope check: a read-only token changes nothing anywhere.
        _audit_refusal(ctx, request, principal.actor, "denied", "read-only API token used for a change")
        raise PermissionDeniedError("this API token is read-only (scope 'read')", scope=principal.scope)
    path = request.url.path
    if path.startswith(SECOND_FACTOR_PATHS):
        return principal  # enrolment and the code itself come before (or with) the password change
    if principal.must_change_password and not path.startswith(PASSWORD_CHANGE_PATHS):
        raise PasswordChangeRequiredError("you must change your password before doing anything else")
    try:  # an enrolled user shows the code before changing a (reset) password; a new user enrols after it
        mfa.check_gate(ctx, principal, enrolment_may_wait=principal.must_change_password)
    except mfa.SecondFactorRequiredError as exc:
        _audit_refusal(ctx, request, principal.actor, "unauthenticated", exc.code)
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
        if not who.can(permission):
            reason = who.refusal_reason(permission)
            _audit_refusal(ctx, request, who.actor, "denied", reason)
            raise PermissionDeniedError(reason, permission=permission.value)
        return who

    dependency.__name__ = f"require_{permission.name.lower()}"
    return dependency
