"""The one audited refusal gate: every refusal, whichever door it came through (the API, the web UI, the CLI,
or a core function they share), is written to the audit log here, in its own transaction (the refused
action's transaction, if any, rolls back; the refusal stays recorded).

Guarantees:
- one record shape: ``outcome`` 'denied' (a missing permission or a failed authentication) or 'refused'
  (anything else; a caller may say 'not_found' where the refusal must read as "no such thing"), and
  ``details.error`` = {code, message} of the error the caller then sees;
- one truncation rule: every text value in the details is cut to ``MAX_TEXT`` characters (the error message
  to ``MAX_MESSAGE``), the target to ``MAX_TARGET``, and characters the database cannot store (NUL, lone
  surrogates) are replaced, so that no refusal goes unrecorded because of what the caller typed;
- never a secret: callers pass what identifies the attempt (case number, gallery, field names), never
  passwords, tokens or image bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from facetrail.audit.log import append_audit
from facetrail.context import AppContext
from facetrail.errors import AuthenticationError, FaceTrailError, PermissionDeniedError
from facetrail.policy.principal import Principal
from facetrail.policy.roles import Permission

MAX_TEXT = 200
MAX_MESSAGE = 500
MAX_TARGET = 200
MAX_ITEMS = 50  # lists in details (e.g. validation problems) keep their first items

E = TypeVar("E", bound=FaceTrailError)


def outcome_for(error: FaceTrailError) -> str:
    if isinstance(error, PermissionDeniedError | AuthenticationError):
        return "denied"
    return "refused"


def clip(value: Any, limit: int = MAX_TEXT) -> Any:
    """The truncation rule, applied recursively: strings cut and made storable, lists shortened."""
    if isinstance(value, str):
        text = value[:limit].replace("\x00", "\ufffd")
        return text.encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, Mapping):
        return {str(k)[:MAX_TEXT]: clip(v, limit) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clip(v, limit) for v in value[:MAX_ITEMS]]
    return value


def audit_refusal(
    ctx: AppContext,
    who: Principal | str,
    action: str,
    target: str,
    error: FaceTrailError,
    *,
    details: Mapping[str, Any] | None = None,
    outcome: str | None = None,
) -> None:
    """Record one refusal (see the module docstring). ``who`` is the principal, or an actor string where no
    principal exists (an unauthenticated request, a local operator command, the scheduler)."""
    actor = who.actor if isinstance(who, Principal) else who
    context = who.audit_context() if isinstance(who, Principal) else {}
    record = {
        **clip(dict(details or {})),
        "error": {"code": error.code, "message": clip(error.message, MAX_MESSAGE)},
        **clip(context, MAX_MESSAGE),
    }
    with ctx.db.transaction() as s:
        append_audit(
            s,
            actor=clip(actor or "anonymous"),
            action=action,
            target=clip(target, MAX_TARGET),
            outcome=outcome or outcome_for(error),
            details=record,
        )


def refuse(
    ctx: AppContext,
    who: Principal | str,
    action: str,
    target: str,
    error: E,
    *,
    details: Mapping[str, Any] | None = None,
    outcome: str | None = None,
) -> E:
    """Audit the refusal and hand the error back for the caller to raise: ``raise refuse(...) from None``."""
    audit_refusal(ctx, who, action, target, error, details=details, outcome=outcome)
    return error


def ensure_permission(
    ctx: AppContext,
    who: Principal,
    permission: Permission,
    *,
    action: str,
    target: str = "",
    details: Mapping[str, Any] | None = None,
) -> None:
    """Return if ``who`` holds ``permission``; otherwise audit the refusal ('denied') and raise it."""
    if who.can(permission):
        return
    raise refuse(
        ctx,
        who,
        action,
        target,
        PermissionDeniedError(who.refusal_reason(permission), permission=permission.value),
        details=details,
    )
