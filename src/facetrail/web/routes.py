"""The web UI's entry point: ``mount(app)`` adds the pages and /static; ``render_error`` renders HTML errors.

Pages are thin: they check the role (denials audited by deps.require), check the form's CSRF token and call
the same core functions as the CLI and the REST API. Sign-in, sign-out, password change and home live here;
the other pages are in search_pages, gallery_pages, audit_pages and admin_pages.
"""

from __future__ import annotations

from dataclasses import replace

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import FormData

from facetrail.accounts import mfa
from facetrail.accounts import service as accounts
from facetrail.audit.refusals import audit_refusal
from facetrail.context import AppContext
from facetrail.errors import FaceTrailError
from facetrail.policy.principal import Principal
from facetrail.service.api.auth import set_session_cookie
from facetrail.service.deps import SESSION_COOKIE, CsrfError, client_ip, get_ctx, optional_principal
from facetrail.service.errors import error_body
from facetrail.web import (
    admin_pages,
    audit_pages,
    examination_pages,
    gallery_pages,
    governance_pages,
    identity_pages,
    oversight_pages,
    search_pages,
)
from facetrail.web.common import (
    LOGIN_CSRF_COOKIE,
    WEB_DIR,
    WebRedirect,
    csrf_ok,
    form_data,
    home_for,
    login_csrf_ok,
    new_login_csrf,
    render,
    safe_next,
    see_other,
    web_principal,
)

# render_error: the error page the API app shows for HTML requests (service.app.WebUI)
from facetrail.web.common import render_error as render_error

router = APIRouter(include_in_schema=False)


def mount(app: FastAPI) -> None:
    app.mount("/static", StaticFiles(directory=str(WEB_DIR / "static")), name="static")
    app.include_router(router)
    for module in (
        search_pages,
        examination_pages,
        governance_pages,
        oversight_pages,
        gallery_pages,
        audit_pages,
        admin_pages,
        identity_pages,
    ):
        app.include_router(module.router)

    @app.exception_handler(WebRedirect)
    async def redirect(_request: Request, exc: WebRedirect) -> Response:
        return see_other(exc.location)

    @app.exception_handler(mfa.StepUpRequiredError)
    async def step_up(request: Request, exc: mfa.StepUpRequiredError) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse(error_body(exc.code, exc.message, exc.details or None), status_code=401)
        act = str(exc.details.get("act") or "this action")
        error = None if "act" in exc.details else exc.message  # a wrong code re-asks with the reason
        return identity_pages.step_up_page(request, act, error=error)


@router.get("/")
def home(who: Principal = Depends(web_principal)) -> Response:
    return see_other(home_for(who))


def _login_page(
    request: Request, *, status: int = 200, error: str | None = None, username: str = "", next_path: str = "/"
) -> HTMLResponse:
    token = new_login_csrf()
    response = render(
        request,
        "login.html",
        status=status,
        title="Sign in",
        error=error,
        username=username,
        next=safe_next(next_path),
        login_csrf=token,
        sso=request.app.state.ctx.settings.oidc.display_name if request.app.state.ctx.settings.oidc.enabled else None,
    )
    response.set_cookie(LOGIN_CSRF_COOKIE, token, httponly=True, samesite="strict", path="/login", max_age=3600)
    return response


@router.get("/login")
def login_form(
    request: Request, next: str = "/", principal: Principal | None = Depends(optional_principal)
) -> Response:
    if principal is not None:
        return see_other(safe_next(next) if next != "/" else home_for(principal))
    return _login_page(request, next_path=next)


@router.post("/login")
def login(request: Request, ctx: AppContext = Depends(get_ctx), form: FormData = Depends(form_data)) -> Response:
    username, password = str(form.get("username") or ""), str(form.get("password") or "")
    next_path = safe_next(str(form.get("next") or "/"))
    if not login_csrf_ok(request, str(form.get("csrf_token") or "")):
        # a forged sign-in (login CSRF: signing the victim's browser into the attacker's account) is audited
        audit_refusal(
            ctx,
            "anonymous",
            "access.denied",
            f"{request.method} {request.url.path}",
            CsrfError("the sign-in form expired or did not come from FaceTrail"),
            details={"reason": "missing or wrong CSRF token (sign-in form)", "username": username[:100]},
            outcome="denied",
        )
        return _login_page(
            request,
            status=400,
            username=username,
            next_path=next_path,
            error="The sign-in form expired. Please try again.",
        )
    try:
        who = accounts.authenticate(
            ctx, username, password, ip=client_ip(request), user_agent=request.headers.get("user-agent", "")
        )
    except FaceTrailError as exc:  # wrong password, locked account, throttled address: say which, nothing more
        status = 429 if exc.code == "too_many_attempts" else 401
        return _login_page(request, status=status, error=exc.message, username=username, next_path=next_path)
    token, _csrf = accounts.create_session(ctx, who)
    response = see_other(identity_pages.after_sign_in(ctx, who, next_path, home_for(who)))
    set_session_cookie(ctx, request, response, token)
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return response


@router.post("/logout")
def logout(
    request: Request,
    ctx: AppContext = Depends(get_ctx),
    principal: Principal | None = Depends(optional_principal),
    form: FormData = Depends(form_data),
) -> Response:
    if principal is not None:
        csrf_ok(request, form)
        accounts.end_session(ctx, request.cookies.get(SESSION_COOKIE, ""), principal)
    response = see_other("/login")
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/password")
def password_form(request: Request, who: Principal = Depends(web_principal)) -> Response:
    return render(request, "password.html", title="Change password")


@router.post("/password")
def password_change(
    request: Request,
    ctx: AppContext = Depends(get_ctx),
    who: Principal = Depends(web_principal),
    form: FormData = Depends(form_data),
) -> Response:
    csrf_ok(request, form)
    new = str(form.get("new_password") or "")
    if new != str(form.get("confirm_password") or ""):
        return render(
            request, "password.html", status=422, title="Change password", error="The two new passwords differ."
        )
    try:
        accounts.change_password(ctx, who, str(form.get("current_password") or ""), new)
    except FaceTrailError as exc:
        return render(request, "password.html", status=422, title="Change password", error=exc.message)
    return see_other(identity_pages.after_sign_in(ctx, replace(who, must_change_password=False), "/", home_for(who)))
