"""Administration: users, units, and every user's API tokens (administrators only; every change audited)."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from facetrail.accounts import grants, mfa
from facetrail.accounts import service as accounts
from facetrail.context import AppContext
from facetrail.policy.principal import Principal
from facetrail.policy.roles import Permission
from facetrail.service.api._common import ERROR_RESPONSES, IdPath
from facetrail.service.api.auth import TokenInfo
from facetrail.service.deps import get_ctx, require

router = APIRouter(tags=["users"], responses=ERROR_RESPONSES)
admin = require(Permission.USERS_MANAGE)

RoleName = Literal["investigator", "reviewer", "auditor", "administrator"]


class UnitOut(BaseModel):
    id: int
    name: str
    agency: str


class UnitCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    agency: str = Field("", max_length=200)


class UserOut(BaseModel):
    id: int
    username: str
    display_name: str
    role: str
    unit: str | None
    unit_id: int | None
    disabled: bool
    must_change_password: bool
    locked: bool
    created_at: dt.datetime


class UserCreate(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    role: RoleName
    unit: str | None = Field(None, max_length=200, description="Unit name; required for investigators and reviewers.")
    display_name: str = Field("", max_length=200)


class UserUpdate(BaseModel):
    role: RoleName | None = None
    unit: str | None = Field(None, max_length=200, description='Unit name; "" removes the unit.')
    disabled: bool | None = None
    reset_password: bool = Field(False, description="Issue a new one-time password (returned once).")


class RoleGrantOut(BaseModel):
    id: int
    username: str | None
    role: str
    previous_role: str | None = Field(description="Null for a new account (disabled until the grant is effective)")
    status: Literal["pending", "effective", "cancelled"]
    path: Literal["second_administrator", "delay"] = Field(
        description="Needs another administrator's approval, or takes effect after the configured delay"
    )
    requested_by: str
    requested_at: dt.datetime
    effective_after: dt.datetime | None
    decided_by: str | None
    decided_at: dt.datetime | None
    reason: str


class GrantCancelIn(BaseModel):
    reason: str = Field("", max_length=2000)


class UserWithPassword(BaseModel):
    user: UserOut
    one_time_password: str | None = Field(
        description="Shown once; the user must change it at first login. Null when no password was issued."
    )
    pending_grant: RoleGrantOut | None = Field(
        None, description="A reviewer or administrator role waits for a second administrator or the delay"
    )


@router.get("/users", response_model=list[UserOut], summary="List users")
def list_users(ctx: AppContext = Depends(get_ctx), who: Principal = Depends(admin)) -> list[UserOut]:
    return [UserOut(**u) for u in accounts.list_users(ctx, who)]


@router.post("/users", response_model=UserWithPassword, status_code=201, summary="Create a user (one-time password)")
def create_user(
    body: UserCreate, ctx: AppContext = Depends(get_ctx), who: Principal = Depends(admin)
) -> UserWithPassword:
    user, password = accounts.create_user(
        ctx, who, username=body.username, role=body.role, unit=body.unit or None, display_name=body.display_name
    )
    grant = user.pop("pending_grant", None)
    return UserWithPassword(
        user=UserOut(**user), one_time_password=password, pending_grant=RoleGrantOut(**grant) if grant else None
    )


@router.get("/users/{username}", response_model=UserOut, summary="Show a user")
def get_user(username: str, ctx: AppContext = Depends(get_ctx), who: Principal = Depends(admin)) -> UserOut:
    for u in accounts.list_users(ctx, who):
        if u["username"] == username:
            return UserOut(**u)
    raise accounts.NotFoundError(f"unknown user {username!r}", field="username")


@router.patch(
    "/users/{username}",
    response_model=UserWithPassword,
    summary="Change role, unit or disabled state, or reset the password (ends the user's sessions)",
)
def update_user(
    username: str, body: UserUpdate, ctx: AppContext = Depends(get_ctx), who: Principal = Depends(admin)
) -> UserWithPassword:
    if body.role is not None:
        mfa.require_fresh_second_factor(ctx, who, "changing a role")
    user, password = accounts.update_user(
        ctx, who, username, role=body.role, unit=body.unit, disabled=body.disabled, reset_password=body.reset_password
    )
    grant = user.pop("pending_grant", None)
    return UserWithPassword(
        user=UserOut(**user), one_time_password=password, pending_grant=RoleGrantOut(**grant) if grant else None
    )


@router.get(
    "/role-grants",
    response_model=list[RoleGrantOut],
    summary="Grants of the reviewer and administrator roles, pending first (reviewers, auditors, administrators)",
)
def list_role_grants(
    pending: bool = False,
    ctx: AppContext = Depends(get_ctx),
    who: Principal = Depends(require(Permission.ROLE_GRANTS_VIEW)),
) -> list[RoleGrantOut]:
    return [RoleGrantOut(**g) for g in grants.list_grants(ctx, who, pending_only=pending)]


@router.post(
    "/role-grants/{grant_id}/approve",
    response_model=RoleGrantOut,
    summary="Approve a pending role grant (another administrator than its requester; it takes effect now)",
)
def approve_role_grant(
    grant_id: IdPath, ctx: AppContext = Depends(get_ctx), who: Principal = Depends(admin)
) -> RoleGrantOut:
    return RoleGrantOut(**grants.approve_grant(ctx, who, grant_id))


@router.post(
    "/role-grants/{grant_id}/cancel", response_model=RoleGrantOut, summary="Cancel a pending role grant (audited)"
)
def cancel_role_grant(
    grant_id: IdPath,
    body: GrantCancelIn | None = None,
    ctx: AppContext = Depends(get_ctx),
    who: Principal = Depends(admin),
) -> RoleGrantOut:
    return RoleGrantOut(**grants.cancel_grant(ctx, who, grant_id, body.reason if body else ""))


@router.get("/units", response_model=list[UnitOut], summary="List units")
def list_units(ctx: AppContext = Depends(get_ctx), who: Principal = Depends(admin)) -> list[UnitOut]:
    return [UnitOut(**u) for u in accounts.list_units(ctx)]


@router.post("/units", response_model=UnitOut, status_code=201, summary="Create a unit")
def create_unit(body: UnitCreate, ctx: AppContext = Depends(get_ctx), who: Principal = Depends(admin)) -> UnitOut:
    return UnitOut(**accounts.create_unit(ctx, who, body.name, body.agency))


@router.get("/tokens", response_model=list[TokenInfo], summary="Every user's API tokens")
def list_all_tokens(ctx: AppContext = Depends(get_ctx), who: Principal = Depends(admin)) -> list[TokenInfo]:
    return [TokenInfo(**t) for t in accounts.list_api_tokens(ctx, who, all_users=True)]


@router.delete("/tokens/{token_id}", response_model=TokenInfo, summary="Revoke any user's API token")
def revoke_any_token(
    token_id: IdPath, ctx: AppContext = Depends(get_ctx), who: Principal = Depends(admin)
) -> TokenInfo:
    return TokenInfo(**accounts.revoke_api_token(ctx, who, token_id))
