"""The API's and the web UI's door to the refusal gate (facetrail.audit.refusals).

Whatever a request is refused for, its answer (an error body, an HTML page with an error, a 422 for a field the
API could not parse, a failed CSRF check) leaves an audit record: the core's own record when it wrote one during
the request (audit.log.REFUSALS_RECORDED), else one written here, with the caller (or 'anonymous') as actor and
"METHOD path" as target: action 'access.denied' for authentication, permission and CSRF refusals,
'request.invalid' for requests that did not parse, 'request.refused' for anything else.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.requests import Request

from facetrail.audit.actions import AuditAction
from facetrail.audit.log import REFUSALS_RECORDED
from facetrail.audit.refusals import audit_refusal
from facetrail.errors import (
    AuthenticationError,
    BadInputError,
    ConflictError,
    FaceTrailError,
    NotFoundError,
    PermissionDeniedError,
)

ACCESS_DENIED = AuditAction.ACCESS_DENIED
REQUEST_INVALID = AuditAction.REQUEST_INVALID
REQUEST_REFUSED = AuditAction.REQUEST_REFUSED


def request_target(request: Request) -> str:
    return f"{request.method} {request.url.path}"


def refusal_recorded() -> bool:
    """Whether an audit record with an outcome other than 'ok' was written while serving this request."""
    return bool(REFUSALS_RECORDED.get())


def audit_request_refusal(
    request: Request,
    error: FaceTrailError,
    *,
    action: str | None = None,
    outcome: str | None = None,
    details: Mapping[str, Any] | None = None,
) -> None:
    """Audit this request's refusal through the gate, unless the core already recorded it."""
    if refusal_recorded():
        return
    who = getattr(request.state, "principal", None) or "anonymous"
    if action is None:
        denied = isinstance(error, PermissionDeniedError | AuthenticationError)
        action = ACCESS_DENIED if denied else REQUEST_REFUSED
    audit_refusal(request.app.state.ctx, who, action, request_target(request), error, details=details, outcome=outcome)


def error_for_status(status: int, message: str) -> FaceTrailError:
    """The error a page's own refusal (a status and a sentence) stands for, for its audit record."""
    kinds: dict[int, type[FaceTrailError]] = {
        401: AuthenticationError,
        403: PermissionDeniedError,
        404: NotFoundError,
        409: ConflictError,
    }
    error = kinds.get(status, BadInputError)(message or f"refused ({status})")
    error.http_status = status
    return error
