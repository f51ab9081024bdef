"""Administration: users (one-time passwords shown once), units, and everyone's own API tokens."""

from __future__ import annotations

import datetime as dt

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from starlette.datastructures import FormData

from facetrail.accounts import mfa
from facetrail.accounts import service as accounts
from facetrail.context import AppContext
from facetrail.errors import BadInputError, FaceTrailError
from facetrail.governance import training
from facetrail.policy.principal import Principal
from facetrail.policy.roles import Permission, Role
from facetrail.service.deps import get_ctx
from facetrail.web.common import csrf_ok, form_data, render, see_other, web_require

router = APIRouter(include_in_schema=False)
ROLES = [r.value for r in Role]
NOTICES = {
    "updated": "Saved.",
    "grant_pending": (
        "Saved. The new role is a pending role grant: it takes effect only after a second administrator "
        "approves it or the waiting period ends (see Role grants)."
    ),
    "unit": "Unit created.",
    "revoked": "Token revoked.",
    "training": "Training recorded.",
}


def _users_page(request: Request, ctx: AppContext, who: Principal, status: int = 200, **extra: object) -> Response:
    users = accounts.list_users(ctx, who)
    return render(
        request,
        "admin_users.html",
        status=status,
        title="Users",
        users=users,
        units=accounts.list_units(ctx),
        roles=ROLES,
        today=dt.datetime.now(dt.UTC).date().isoformat(),
        training={u["username"]: training.training_status(ctx, u["username"]) for u in users},
        **extra,
    )


@router.get("/admin/users")
def users(
    request: Request,
    done: str = "",
    ctx: AppContext = Depends(get_ctx),
    who: Principal = web_require(Permission.USERS_MANAGE),
) -> Response:
    return _users_page(request, ctx, who, notice=NOTICES.get(done))


@router.post("/admin/users")
def create_user(
    request: Request,
    ctx: AppContext = Depends(get_ctx),
    who: Principal = web_require(Permission.USERS_MANAGE),
    form: FormData = Depends(form_data),
) -> Response:
    csrf_ok(request, form)
    unit = str(form.get("unit") or "")
    try:
        user, password = accounts.create_user(
            ctx,
            who,
            username=str(form.get("username") or ""),
            role=str(form.get("role") or ""),
            unit=int(unit) if unit.isdigit() else None,
            display_name=str(form.get("display_name") or ""),
        )
    except FaceTrailError as exc:
        return _users_page(request, ctx, who, status=422, error=exc.message, form=dict(form))
    return render(
        request,
        "one_time_secret.html",
        title="User created",
        heading=f"User {user['username']} created",
        label="One-time password",
        secret=password,
        back="/admin/users",
        explain="Give it to the user through a safe channel. It is shown only now; the user must "
        "change it at first sign-in."
        + (
            f" The {user['pending_grant']['role']} role is a pending grant (Role grants): the account stays disabled "
            "until a second administrator approves it or its waiting period has passed."
            if user.get("pending_grant")
            else ""
        ),
    )


def _current_role(ctx: AppContext, who: Principal, username: str) -> str | None:
    return next((u["role"] for u in accounts.list_users(ctx, who) if u["username"] == username), None)


@router.post("/admin/users/{username}")
def update_user(
    username: str,
    request: Request,
    ctx: AppContext = Depends(get_ctx),
    who: Principal = web_require(Permission.USERS_MANAGE),
    form: FormData = Depends(form_data),
) -> Response:
    csrf_ok(request, form)
    action = str(form.get("action") or "save")
    try:
        if action == "reset_password":
            _user, password = accounts.update_user(ctx, who, username, reset_password=True)
            return render(
                request,
                "one_time_secret.html",
                title="Password reset",
                heading=f"New password for {username}",
                label="One-time password",
                secret=password,
                back="/admin/users",
                explain="Shown only now. The user's sessions were ended; they must change it at sign-in.",
            )
        if action in ("disable", "enable"):
            accounts.update_user(ctx, who, username, disabled=action == "disable")
        else:
            unit = str(form.get("unit") or "")
            role = str(form.get("role") or "") or None
            if role is not None and role != _current_role(ctx, who, username):
                mfa.require_fresh_second_factor(ctx, who, "changing a role")
            updated, _ = accounts.update_user(ctx, who, username, role=role, unit=int(unit) if unit.isdigit() else None)
            if updated.get("pending_grant"):
                return see_other("/admin/users?done=grant_pending")
    except mfa.StepUpRequiredError:
        raise
    except FaceTrailError as exc:
        return _users_page(request, ctx, who, status=422, error=f"{username}: {exc.message}")
    return see_other("/admin/users?done=updated")


@router.post("/admin/users/{username}/training")
def record_training(
    username: str,
    request: Request,
    ctx: AppContext = Depends(get_ctx),
    who: Principal = web_require(Permission.TRAINING_MANAGE),
    form: FormData = Depends(form_data),
) -> Response:
    """Record a user's completed search training (audited by the core); searching needs a valid one."""
    csrf_ok(request, form)
    try:
        try:
            completed_on = dt.date.fromisoformat(str(form.get("completed_on") or ""))
        except ValueError:
            raise BadInputError("the completion date must be a date (YYYY-MM-DD)", field="completed_on") from None
        training.record_training(
            ctx,
            username,
            completed_on,
            str(form.get("course") or ""),
            actor=who.actor,
            audit_context=who.audit_context(),
        )
    except FaceTrailError as exc:
        return _users_page(request, ctx, who, status=422, error=f"{username}: {exc.message}")
    return see_other("/admin/users?done=training")


@router.get("/admin/units")
def units(
    request: Request,
    done: str = "",
    ctx: AppContext = Depends(get_ctx),
    who: Principal = web_require(Permission.USERS_MANAGE),
) -> Response:
    return render(request, "admin_units.html", title="Units", units=accounts.list_units(ctx), notice=NOTICES.get(done))


@router.post("/admin/units")
def create_unit(
    request: Request,
    ctx: AppContext = Depends(get_ctx),
    who: Principal = web_require(Permission.USERS_MANAGE),
    form: FormData = Depends(form_data),
) -> Response:
    csrf_ok(request, form)
    try:
        accounts.create_unit(ctx, who, str(form.get("name") or ""), str(form.get("agency") or ""))
    except FaceTrailError as exc:
        return render(
            request, "admin_units.html", status=422, title="Units", units=accounts.list_units(ctx), error=exc.message
        )
    return see_other("/admin/units?done=unit")


@router.get("/tokens")
def tokens(
    request: Request,
    done: str = "",
    ctx: AppContext = Depends(get_ctx),
    who: Principal = web_require(Permission.TOKENS_OWN),
) -> Response:
    return render(
        request,
        "tokens.html",
        title="API tokens",
        tokens=accounts.list_api_tokens(ctx, who),
        max_days=ctx.settings.auth.max_token_days,
        default_days=ctx.settings.auth.default_token_days,
        notice=NOTICES.get(done),
    )


@router.post("/tokens")
def create_token(
    request: Request,
    ctx: AppContext = Depends(get_ctx),
    who: Principal = web_require(Permission.TOKENS_OWN),
    form: FormData = Depends(form_data),
) -> Response:
    csrf_ok(request, form)
    days = str(form.get("days") or "")
    try:
        info, secret = accounts.create_api_token(
            ctx,
            who,
            str(form.get("name") or ""),
            int(days) if days.isdigit() else None,
            str(form.get("scope") or "") or None,
        )
    except FaceTrailError as exc:
        return render(
            request,
            "tokens.html",
            status=422,
            title="API tokens",
            error=exc.message,
            tokens=accounts.list_api_tokens(ctx, who),
            max_days=ctx.settings.auth.max_token_days,
            default_days=ctx.settings.auth.default_token_days,
        )
    return render(
        request,
        "one_time_secret.html",
        title="Token created",
        heading=f"API token “{info['name']}”",
        label="Token",
        secret=secret,
        back="/tokens",
        explain=f"Send it as 'Authorization: Bearer …'. It is shown only now (only its hash is kept) "
        f"and expires {info['expires_at']:%Y-%m-%d}.",
    )


@router.post("/tokens/{token_id}/revoke")
def revoke_token(
    token_id: int,
    request: Request,
    ctx: AppContext = Depends(get_ctx),
    who: Principal = web_require(Permission.TOKENS_OWN),
    form: FormData = Depends(form_data),
) -> Response:
    csrf_ok(request, form)
    accounts.revoke_api_token(ctx, who, token_id)
    return see_other("/tokens?done=revoked")
