"""What every page shares: templates, the signed-in user as a dependency, CSRF on forms, redirects."""

from __future__ import annotations

import contextlib
import datetime as dt
import hmac
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.datastructures import FormData

from facetrail.accounts import mfa
from facetrail.context import AppContext
from facetrail.errors import FaceTrailError
from facetrail.policy.principal import Principal
from facetrail.policy.roles import Permission
from facetrail.service.deps import (
    PasswordChangeRequiredError,
    check_form_csrf,
    current_principal,
    get_ctx,
    optional_principal,
    require,
)
from facetrail.service.refusals import audit_request_refusal, error_for_status

WEB_DIR = Path(__file__).parent
templates = Jinja2Templates(directory=str(WEB_DIR / "templates"))
LOGIN_CSRF_COOKIE = "facetrail_login_csrf"
STEP_UP_FIELD = "step_up_code"


class WebRedirect(Exception):
    """Raised by a dependency to send the browser elsewhere (e.g. to the forced password change)."""

    def __init__(self, location: str) -> None:
        super().__init__(location)
        self.location = location


def _when(value: Any) -> str:
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    text = str(value or "")
    return text[:16].replace("T", " ") + (" UTC" if len(text) >= 16 else "")


templates.env.filters["when"] = _when


async def form_data(request: Request) -> FormData:
    """The posted form, parsed before the (synchronous) route runs in the thread pool: routes call blocking
    core functions (argon2, the face pipeline, the database), which must not run on the event loop.

    A form re-posted from the step-up page carries ``step_up_code``: it is checked (after the form's CSRF
    token) before the route runs, so the resumed action finds a fresh second factor."""
    form = await request.form()
    request.state.form = form
    code = form.get(STEP_UP_FIELD)
    if isinstance(code, str) and code and request.url.path != "/mfa/step-up":
        await run_in_threadpool(_step_up_from_form, request, form, code)
    return form


def _step_up_from_form(request: Request, form: FormData, code: str) -> None:
    ctx: AppContext = request.app.state.ctx
    who = optional_principal(request, ctx)
    if who is None:
        return
    csrf_ok(request, form)
    try:
        mfa.verify_second_factor(ctx, who, code, purpose="step_up")
    except mfa.AccountLockedError:
        raise
    except FaceTrailError as exc:
        raise mfa.StepUpRequiredError(exc.message) from None


def web_principal(
    request: Request, ctx: AppContext = Depends(get_ctx), principal: Principal | None = Depends(optional_principal)
) -> Principal:
    """The signed-in user; not signed in → the login page (GET), must change password → the password page."""
    try:
        return current_principal(request, ctx, principal)
    except PasswordChangeRequiredError:
        raise WebRedirect("/password") from None
    except mfa.EnrolmentRequiredError:
        raise WebRedirect("/mfa/enrol") from None
    except mfa.SecondFactorRequiredError:
        target = request.url.path if request.method == "GET" else "/"
        raise WebRedirect(f"/mfa?next={quote(target)}") from None


def web_require(permission: Permission) -> Any:
    """Like deps.require (denials are audited), but with the web UI's redirects."""

    def dependency(
        request: Request, ctx: AppContext = Depends(get_ctx), who: Principal = Depends(web_principal)
    ) -> Principal:
        return require(permission)(request, ctx, who)

    dependency.__name__ = f"web_require_{permission.name.lower()}"
    return Depends(dependency)


def csrf_ok(request: Request, form: Any) -> None:
    submitted = form.get("csrf_token")
    check_form_csrf(request, submitted if isinstance(submitted, str) else None)


def login_csrf_ok(request: Request, submitted: str | None) -> bool:
    """Before there is a session the form's token must match a cookie set with the form (double submit)."""
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    return bool(submitted and expected and hmac.compare_digest(submitted, expected))


def new_login_csrf() -> str:
    return secrets.token_urlsafe(24)


def nav_items(who: Principal | None) -> list[tuple[str, str]]:
    if who is None or who.must_change_password:
        return []
    items: list[tuple[str, str]] = []
    if who.can(Permission.SEARCH_RUN):
        items.append(("/search/new", "New search"))
    if (
        who.can(Permission.SEARCH_VIEW_OWN)
        or who.can(Permission.SEARCH_VIEW_UNIT)
        or who.can(Permission.SEARCH_METADATA_ALL)
    ):
        items.append(("/searches", "Searches"))
    if who.can(Permission.REVIEW_DECIDE):
        items.append(("/examinations", "Examinations"))
    if who.can(Permission.SEARCH_RUN) or who.can(Permission.SEARCH_APPROVE) or who.can(Permission.SEARCH_METADATA_ALL):
        items.append(("/requests", "Requests"))
    if who.can(Permission.GALLERY_MANAGE):
        items.append(("/galleries", "Galleries"))
    if who.can(Permission.AUDIT_READ):
        items.append(("/audit", "Audit"))
    if who.can(Permission.OVERSIGHT_VIEW_UNIT) or who.can(Permission.OVERSIGHT_VIEW_ALL):
        items.append(("/oversight", "Oversight"))
    if who.can(Permission.REPORT_READ) or who.can(Permission.CASE_PACKET):
        items.append(("/reports", "Reports"))
    if who.can(Permission.USERS_MANAGE):
        items.append(("/admin/users", "Users"))
        items.append(("/admin/units", "Units"))
    if who.can(Permission.LEGAL_HOLD):
        items.append(("/holds", "Legal holds"))
    if who.can(Permission.ROLE_GRANTS_VIEW):
        items.append(("/role-grants", "Role grants"))
    if who.can(Permission.USERS_MANAGE):
        items.append(("/admin/sessions", "All sessions"))
    items.append(("/policy", "Policy"))
    items.append(("/tokens", "API tokens"))
    items.append(("/sessions", "My sessions"))
    items.append(("/passkeys", "Passkeys"))
    return items


def _pending_grants(request: Request, who: Principal | None) -> list[dict[str, Any]]:
    """Pending grants of the reviewer or administrator role: every page shows them to those who watch them."""
    if who is None or not who.can(Permission.ROLE_GRANTS_VIEW):
        return []
    from facetrail.accounts import grants

    ctx = request.app.state.ctx
    return [g for g in grants.list_grants(ctx, who, pending_only=True)]


def render(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    """A page. A page that refuses what was asked (status 400 or more, with an ``error`` sentence) is audited
    through the refusal gate unless the core already recorded the refusal (facetrail.service.refusals)."""
    who: Principal | None = getattr(request.state, "principal", None)
    if status >= 400 and context.get("error"):
        audit_request_refusal(request, error_for_status(status, str(context["error"])))
    context.setdefault("title", "FaceTrail")
    return templates.TemplateResponse(
        request,
        template,
        {
            "who": who,
            "nav": nav_items(who),
            "pending_grants": _pending_grants(request, who),
            "csrf": getattr(request.state, "csrf", None) or "",
            "path": request.url.path,
            **context,
        },
        status_code=status,
    )


def see_other(location: str) -> Response:
    return RedirectResponse(location, status_code=303)


def safe_next(target: str | None) -> str:
    """Only local paths: never an open redirect to another site."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"


ERROR_HEADINGS = {
    400: "That request could not be done",
    401: "Sign in first",
    403: "Not allowed",
    404: "Not found",
    409: "Conflict",
    413: "Too large",
    422: "Check the form",
    429: "Too many attempts",
}


def render_error(request: Request, status: int, message: str) -> Response:
    if not hasattr(request.state, "principal"):  # an error before any route ran (e.g. 404): still show who
        with contextlib.suppress(FaceTrailError):
            optional_principal(request, request.app.state.ctx)
    return render(
        request,
        "error.html",
        status=status,
        title=f"Error {status}",
        heading=ERROR_HEADINGS.get(status, "Something went wrong"),
        message=message,
    )


def home_for(who: Principal) -> str:
    if who.can(Permission.SEARCH_RUN):
        return "/search/new"
    if who.can(Permission.REVIEW_DECIDE):
        return "/examinations"  # the reviewer's work: the examinations the system assigned
    if who.can(Permission.SEARCH_VIEW_UNIT) or who.can(Permission.SEARCH_METADATA_ALL):
        return "/searches" if not who.can(Permission.AUDIT_READ) else "/audit"
    if who.can(Permission.GALLERY_MANAGE):
        return "/galleries"
    return "/tokens"
