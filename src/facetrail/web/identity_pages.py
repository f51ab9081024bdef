"""Web pages of sign-in's second half: TOTP enrolment, the second-factor prompt, step-up (ask for a code, then
resume the action), and sessions (one's own; an administrator's view of everyone's). Thin over accounts.mfa and
accounts.sessions.

Step-up in the browser: a sensitive act raises mfa.StepUpRequiredError; ``step_up_page`` answers with a form
asking for the code. For a GET (a download) the form posts to /mfa/step-up, which then sends the browser back to
the original address; for a POST it posts the original form's fields again, plus ``step_up_code``, to the
original action, where ``common.form_data`` checks the code before the route runs.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from starlette.datastructures import FormData

from facetrail.accounts import mfa, oidc, passkeys, sessions
from facetrail.accounts import service as accounts
from facetrail.context import AppContext
from facetrail.errors import FaceTrailError
from facetrail.policy.principal import Principal
from facetrail.policy.roles import Permission
from facetrail.service.api.auth import set_session_cookie
from facetrail.service.deps import client_ip, get_ctx
from facetrail.web.common import (
    STEP_UP_FIELD,
    csrf_ok,
    form_data,
    render,
    safe_next,
    see_other,
    web_principal,
    web_require,
)

router = APIRouter(include_in_schema=False)


def after_sign_in(ctx: AppContext, who: Principal, next_path: str, home: str) -> str:
    """Where the browser goes once the password is right: password change, enrolment, code, or the page."""
    state = mfa.factor_state(ctx, who)
    target = next_path if next_path != "/" else home
    if who.must_change_password:  # an enrolled user shows the code first; a new one enrols after the change
        return "/mfa?next=/password" if state.required and state.enrolled else "/password"
    if state.required and state.second_factor_at is None:
        return "/mfa/enrol" if not state.enrolled else f"/mfa?next={target}"
    return target


def _verify_page(request: Request, *, next_path: str, status: int = 200, error: str | None = None) -> Response:
    who = getattr(request.state, "principal", None)
    passkey_count = mfa.mfa_status(request.app.state.ctx, who)["passkeys"] if who is not None else 0
    return render(
        request,
        "mfa_verify.html",
        status=status,
        title="Second factor",
        heading="Enter your code",
        explain="Open your authenticator app and enter the 6-digit code for FaceTrail.",
        action="/mfa",
        field="code",
        button="Continue",
        replay=[("next", next_path)],
        next=next_path,
        error=error,
        passkeys=passkey_count > 0,
    )


@router.get("/mfa")
def mfa_prompt(
    request: Request, next: str = "/", ctx: AppContext = Depends(get_ctx), who: Principal = Depends(web_principal)
) -> Response:
    state = mfa.factor_state(ctx, who)
    if not state.enrolled:
        return see_other("/mfa/enrol")
    if state.second_factor_at is not None:
        return see_other(safe_next(next))
    return _verify_page(request, next_path=safe_next(next))


@router.post("/mfa")
def mfa_verify(
    request: Request,
    ctx: AppContext = Depends(get_ctx),
    who: Principal = Depends(web_principal),
    form: FormData = Depends(form_data),
) -> Response:
    csrf_ok(request, form)
    next_path = safe_next(str(form.get("next") or "/"))
    try:
        mfa.verify_second_factor(ctx, who, str(form.get("code") or ""))
    except mfa.AccountLockedError as exc:
        return _verify_page(request, next_path=next_path, status=429, error=exc.message)
    except FaceTrailError as exc:
        return _verify_page(request, next_path=next_path, status=401, error=exc.message)
    if next_path == "/":
        return see_other("/")
    return see_other(next_path)


@router.get("/mfa/enrol")
def enrol_form(
    request: Request, ctx: AppContext = Depends(get_ctx), who: Principal = Depends(web_principal)
) -> Response:
    if mfa.factor_state(ctx, who).enrolled:
        return see_other("/mfa")
    return render(
        request, "mfa_enrol.html", title="Set up your second factor", enrolment=mfa.begin_totp_enrolment(ctx, who)
    )


@router.post("/mfa/enrol")
def enrol_confirm(
    request: Request,
    ctx: AppContext = Depends(get_ctx),
    who: Principal = Depends(web_principal),
    form: FormData = Depends(form_data),
) -> Response:
    csrf_ok(request, form)
    try:
        codes = mfa.confirm_totp_enrolment(ctx, who, str(form.get("code") or ""))
    except FaceTrailError as exc:
        if isinstance(exc, mfa.AccountLockedError):
            raise
        enrolment = mfa.begin_totp_enrolment(ctx, who)
        return render(
            request,
            "mfa_enrol.html",
            status=422,
            title="Set up your second factor",
            enrolment=enrolment,
            error=exc.message,
        )
    return render(request, "mfa_recovery.html", title="Recovery codes", codes=codes, next="/")


@router.post("/mfa/step-up")
def step_up_for_get(
    request: Request,
    ctx: AppContext = Depends(get_ctx),
    who: Principal = Depends(web_principal),
    form: FormData = Depends(form_data),
) -> Response:
    """The code for a GET that needed step-up (e.g. a download): checked, then back to that address."""
    csrf_ok(request, form)
    next_path = safe_next(str(form.get("next") or "/"))
    try:
        mfa.verify_second_factor(ctx, who, str(form.get(STEP_UP_FIELD) or ""), purpose="step_up")
    except mfa.AccountLockedError:
        raise
    except FaceTrailError as exc:
        return step_up_page(request, "this action", error=exc.message, next_path=next_path)
    return see_other(next_path)


def step_up_page(request: Request, act: str, *, error: str | None = None, next_path: str | None = None) -> Response:
    """Ask for a fresh code, then resume: a GET comes back to its address, a POST is re-posted with its fields."""
    form: FormData | None = getattr(request.state, "form", None)
    if request.method == "GET" or next_path is not None:
        target = next_path or safe_next(request.url.path + (f"?{request.url.query}" if request.url.query else ""))
        action, replay = "/mfa/step-up", [("next", target)]
    else:
        action = request.url.path
        replay = [
            (k, v)
            for k, v in (form.multi_items() if form is not None else [])
            if isinstance(v, str) and k not in ("csrf_token", STEP_UP_FIELD)
        ]
    return render(
        request,
        "mfa_verify.html",
        status=401,
        title="Confirm it is you",
        heading="Confirm it is you",
        explain=f"{act[:1].upper()}{act[1:]} needs a fresh code from your authenticator app.",
        action=action,
        field=STEP_UP_FIELD,
        button="Confirm and continue",
        replay=replay,
        next="/",
        error=error,
    )


# --- sessions ---------------------------------------------------------------------------------------------


def _sessions_page(request: Request, ctx: AppContext, who: Principal, *, all_users: bool) -> Response:
    rows = sessions.list_sessions(ctx, who, all_users=all_users)
    return render(
        request,
        "sessions.html",
        title="Sessions",
        heading="All sessions" if all_users else "My sessions",
        sessions=rows,
        all_users=all_users,
        end_action="/admin/sessions" if all_users else "/sessions",
        idle=f"{ctx.settings.auth.session_idle_minutes:g}",
        lifetime=f"{ctx.settings.auth.session_hours:g}",
    )


@router.get("/sessions")
def my_sessions(
    request: Request, ctx: AppContext = Depends(get_ctx), who: Principal = Depends(web_principal)
) -> Response:
    return _sessions_page(request, ctx, who, all_users=False)


@router.post("/sessions/{session_id}/end")
def end_my_session(
    session_id: int,
    request: Request,
    ctx: AppContext = Depends(get_ctx),
    who: Principal = Depends(web_principal),
    form: FormData = Depends(form_data),
) -> Response:
    csrf_ok(request, form)
    sessions.end_session_by_id(ctx, who, session_id)
    return see_other("/sessions")


@router.get("/admin/sessions")
def all_sessions(
    request: Request, ctx: AppContext = Depends(get_ctx), who: Principal = web_require(Permission.USERS_MANAGE)
) -> Response:
    return _sessions_page(request, ctx, who, all_users=True)


@router.post("/admin/sessions/{session_id}/end")
def end_any_session(
    session_id: int,
    request: Request,
    ctx: AppContext = Depends(get_ctx),
    who: Principal = web_require(Permission.USERS_MANAGE),
    form: FormData = Depends(form_data),
) -> Response:
    csrf_ok(request, form)
    sessions.end_session_by_id(ctx, who, session_id)
    return see_other("/admin/sessions")


@router.post("/admin/users/{username}/mfa-reset")
def reset_user_mfa(
    username: str,
    request: Request,
    ctx: AppContext = Depends(get_ctx),
    who: Principal = web_require(Permission.USERS_MANAGE),
    form: FormData = Depends(form_data),
) -> Response:
    csrf_ok(request, form)
    mfa.reset_mfa(ctx, who, username)
    return see_other("/admin/users?done=mfa-reset")


# --- single sign-on (OpenID Connect) ----------------------------------------------------------------------

SSO_FLOW_COOKIE = "facetrail_sso_flow"


def _callback_url(request: Request) -> str:
    return str(request.base_url).rstrip("/") + "/sso/callback"


@router.get("/sso/login")
def sso_login(request: Request, next: str = "/", ctx: AppContext = Depends(get_ctx)) -> Response:
    """Send the browser to the agency's provider; state, nonce and PKCE verifier stay in a short cookie."""
    url, flow = oidc.begin(ctx, _callback_url(request))
    response = see_other(url)
    response.set_cookie(
        SSO_FLOW_COOKIE,
        flow.cookie(),
        max_age=oidc.FLOW_SECONDS,
        httponly=True,
        samesite="lax",  # it must come back with the provider's top-level redirect
        secure=request.url.scheme == "https",
        path="/sso/",
    )
    response.set_cookie("facetrail_sso_next", safe_next(next), max_age=oidc.FLOW_SECONDS, httponly=True, path="/sso/")
    return response


@router.get("/sso/callback")
def sso_callback(
    request: Request, code: str = "", state: str = "", error: str = "", ctx: AppContext = Depends(get_ctx)
) -> Response:
    from facetrail.web.routes import home_for, render_error

    if error:
        return render_error(request, 401, f"the identity provider refused the sign-in ({error[:100]})")
    try:
        who = oidc.complete(
            ctx,
            code=code[:2000],
            state=state[:200],
            flow_cookie=request.cookies.get(SSO_FLOW_COOKIE, ""),
            redirect_uri=_callback_url(request),
            ip=client_ip(request),
            user_agent=request.headers.get("user-agent", ""),
        )
    except oidc.SsoError as exc:
        response = render_error(request, 401, exc.message)
        response.delete_cookie(SSO_FLOW_COOKIE, path="/sso/")
        return response
    token, _csrf = accounts.create_session(ctx, who, method="oidc")
    next_path = safe_next(request.cookies.get("facetrail_sso_next", "/"))
    response = see_other(after_sign_in(ctx, who, next_path, home_for(who)))
    set_session_cookie(ctx, request, response, token)
    response.delete_cookie(SSO_FLOW_COOKIE, path="/sso/")
    response.delete_cookie("facetrail_sso_next", path="/sso/")
    return response


# --- passkeys ---------------------------------------------------------------------------------------------


@router.get("/passkeys")
def passkeys_page(
    request: Request, ctx: AppContext = Depends(get_ctx), who: Principal = Depends(web_principal)
) -> Response:
    return render(request, "passkeys.html", title="Passkeys", passkeys=passkeys.list_passkeys(ctx, who))


@router.post("/passkeys/{passkey_id}/revoke")
def passkey_revoke(
    passkey_id: int,
    request: Request,
    ctx: AppContext = Depends(get_ctx),
    who: Principal = Depends(web_principal),
    form: FormData = Depends(form_data),
) -> Response:
    csrf_ok(request, form)
    passkeys.revoke(ctx, who, passkey_id)
    return see_other("/passkeys?done=revoked")
