"""Shared pieces of the API routers: the error body schema, any-of permission checks, upload reading."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, Path, Request, UploadFile
from pydantic import BaseModel

from facetrail.audit.log import append_audit
from facetrail.context import AppContext
from facetrail.errors import BadInputError, ImageTooLargeError, PermissionDeniedError
from facetrail.policy.principal import Principal
from facetrail.policy.roles import Permission
from facetrail.service.deps import current_principal, get_ctx

# Database ids: bounded so that no client-chosen number can overflow an integer column.
IdPath = Annotated[int, Path(ge=1, le=2**31 - 1)]


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: dict[str, Any] | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": description}


# Declared on every router so the OpenAPI document describes what clients really get on failure.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _error("Bad input (code names the problem)"),
    401: _error("Not signed in, or the API token is invalid"),
    403: _error("The caller's role may not do this (audited)"),
    404: _error("Not found, or outside the caller's scope (audited)"),
    409: _error("Conflict"),
    413: _error("Upload or image too large"),
    422: _error("Validation error, or an unusable photo"),
    429: _error("Too many attempts"),
}

JPEG_RESPONSE: dict[int | str, dict[str, Any]] = {200: {"content": {"image/jpeg": {}}, "description": "JPEG image"}}


def require_any(*permissions: Permission) -> Callable[..., Principal]:
    """Like deps.require, for routes open to several permissions (e.g. the three ways to view searches)."""

    def dependency(
        request: Request, ctx: AppContext = Depends(get_ctx), who: Principal = Depends(current_principal)
    ) -> Principal:
        if not any(who.can(p) for p in permissions):
            with ctx.db.transaction() as s:
                append_audit(
                    s,
                    actor=who.actor,
                    action="access.denied",
                    target=f"{request.method} {request.url.path}"[:300],
                    outcome="denied",
                    details={"reason": f"role '{who.role}' lacks any of {', '.join(p.value for p in permissions)}"},
                )
            raise PermissionDeniedError(
                f"role '{who.role}' may not do this", permissions=[p.value for p in permissions]
            )
        return who

    dependency.__name__ = "require_any_" + "_".join(p.name.lower() for p in permissions)
    return dependency


def read_upload(upload: UploadFile, field: str, max_bytes: int) -> bytes:
    """The whole upload (the request body limit has already bounded it), refused if empty or over max_bytes."""
    data = upload.file.read(max_bytes + 1)
    if not data:
        raise BadInputError(f"{field}: the uploaded file is empty", field=field)
    if len(data) > max_bytes:
        raise ImageTooLargeError(f"{field}: the file is over the limit of {max_bytes:,} bytes", field=field)
    return data
