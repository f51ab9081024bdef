"""The one audited refusal gate: every refusal, whichever door it came through (the API, the web UI, the CLI,
or a core function they share), is written to the audit log here, in its own transaction (the refused
action's transaction, if any, rolls back; the refusal stays recorded).

Guarantees:
- one record shape: ``outcome`` 'denied' (a missing permission or a failed authentication) or 'refused'
  (anything else; a caller may say 'not_found' where the refusal must read as "no such thing", or
  'unauthenticated'), and ``details.error`` = {code, message, details?} of the error the caller then sees
  (its scalar details only: field names, allowed values, never images or nested data);
- one truncation rule (``clip``): every text in the details is cut to ``MAX_TEXT`` characters (the error
  message and the request context to ``MAX_MESSAGE``, the target to ``MAX_TARGET``), and control, format and
  surrogate characters are written as ``\\uXXXX``, so that no refusal goes unrecorded because of what the caller
  typed and nothing typed can disguise a record (RLO, NUL, newlines);
- never a secret: callers pass what identifies the attempt (case number, gallery, field names), never
  passwords, tokens or image bytes;
- the doors: the API and web UI (facetrail.service.refusals) and the CLI (facetrail.cli.common) audit, through
  this gate, any refusal they answer that the core did not already record (audit.log.REFUSALS_RECORDED).
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Mapping
from typing import Any, TypeVar

from facetrail.audit.actions import AuditAction, Outcome
from facetrail.audit.log import append_audit
from facetrail.context import AppContext
from facetrail.errors import AuthenticationError, FaceTrailError, PermissionDeniedError
from facetrail.policy.principal import Principal
from facetrail.policy.roles import Permission

log = logging.getLogger(__name__)

MAX_TEXT = 200
MAX_MESSAGE = 500
MAX_TARGET = 300
MAX_ITEMS = 50  # lists in details (e.g. validation problems) keep their first items
HIDDEN_CATEGORIES = ("Cc", "Cf", "Cs")  # control, format (RLO, zero-width), lone surrogates

E = TypeVar("E", bound=FaceTrailError)


def outcome_for(error: FaceTrailError) -> Outcome:
    if isinstance(error, PermissionDeniedError | AuthenticationError):
        return Outcome.DENIED
    return Outcome.REFUSED


def clip(value: Any, limit: int = MAX_TEXT) -> Any:
    """The truncation rule, applied recursively: strings cut and made visible, lists shortened."""
    if isinstance(value, str):
        return "".join(f"\\u{ord(c):04x}" if unicodedata.category(c) in HIDDEN_CATEGORIES else c for c in value[:limit])
    if isinstance(value, Mapping):
        return {clip(str(k)): clip(v, limit) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clip(v, limit) for v in value[:MAX_ITEMS]]
    return value


def _scalar(value: Any) -> bool:
    if isinstance(value, list | tuple):
        return all(v is None or isinstance(v, str | int | float | bool) for v in value)
    return value is None or isinstance(value, str | int | float | bool)


def error_record(error: FaceTrailError) -> dict[str, Any]:
    """What the audit record says of the error: its code, message and scalar details."""
    record: dict[str, Any] = {"code": error.code, "message": clip(error.message, MAX_MESSAGE)}
    details = {k: v for k, v in (error.details or {}).items() if _scalar(v)}
    if details:
        record["details"] = clip(details)
    return record


def audit_refusal(
    ctx: AppContext,
    who: Principal | str,
    action: AuditAction | str,
    target: str,
    error: FaceTrailError,
    *,
    details: Mapping[str, Any] | None = None,
    outcome: Outcome | str | None = None,
) -> None:
    """Record one refusal (see the module docstring). ``who`` is the principal, or an actor string where no
    principal exists (an unauthenticated request, a local operator command, the scheduler). If the audit log
    cannot be written the refusal still stands: the caller raises its error either way (and it is logged)."""
    actor = who.actor if isinstance(who, Principal) else who
    context = who.audit_context() if isinstance(who, Principal) else {}
    record = {**clip(dict(details or {})), "error": error_record(error), **clip(context, MAX_MESSAGE)}
    try:
        with ctx.db.transaction() as s:
            append_audit(
                s,
                actor=clip(actor or "anonymous"),
                action=action,
                target=clip(target, MAX_TARGET),
                outcome=outcome or outcome_for(error),
                details=record,
            )
    except Exception:
        log.exception("could not audit a refused %s", action)


def refuse(
    ctx: AppContext,
    who: Principal | str,
    action: AuditAction | str,
    target: str,
    error: E,
    *,
    details: Mapping[str, Any] | None = None,
    outcome: Outcome | str | None = None,
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
        details={"reason": who.refusal_reason(permission), **(details or {})},
    )
