"""The search path's hook point: guards consulted before every search and told after it.

facetrail.oversight installs its guard here (``install_guard``), so that the search path can apply limits and
case verification and trigger anomaly detection without importing oversight (which builds on cases, governance
and audit): dependencies point inward.

Guarantees:
- ``before_search`` runs inside run_search's refusal gate: a FaceTrailError it raises refuses the search and the
  refusal is audited like every other ('search', outcome 'refused', with the error code).
- ``after_search`` runs once the search is committed; whatever it does or raises never changes the search's
  result (errors are logged), and it must return quickly (heavy work goes to a background thread).
- Fail closed: when the policy in force turns on a limit or case verification but no guard is installed (a
  process wired without facetrail.oversight), every search is refused ('oversight_unavailable').
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Protocol

from facetrail.errors import FaceTrailError

if TYPE_CHECKING:
    from facetrail.cases.probe import SearchRequest
    from facetrail.context import AppContext
    from facetrail.governance.policy import Policy
    from facetrail.policy.principal import Principal

log = logging.getLogger(__name__)


class OversightUnavailableError(FaceTrailError):
    """The policy asks for limits or case verification, but this process has no oversight guard installed."""

    code = "oversight_unavailable"
    http_status = 503


class SearchGuard(Protocol):
    def before_search(
        self, ctx: AppContext, who: Principal, req: SearchRequest, policy: Policy, approval_id: int | None
    ) -> None: ...

    def after_search(self, ctx: AppContext, who: Principal, search_id: int) -> None: ...


_guards: list[SearchGuard] = []


def install_guard(guard: SearchGuard) -> None:
    """Idempotent per guard type (importing the wiring twice installs it once)."""
    if not any(type(g) is type(guard) for g in _guards):
        _guards.append(guard)


def installed_guards() -> list[SearchGuard]:
    return list(_guards)


def before_search(ctx: AppContext, who: Principal, req: SearchRequest, policy: Policy, approval_id: int | None) -> None:
    if not _guards and (policy.limits.any or policy.cases.verification != "off"):
        raise OversightUnavailableError(
            "the policy sets search limits or case verification, but oversight is not installed in this process"
        )
    for guard in _guards:
        guard.before_search(ctx, who, req, policy, approval_id)


def after_search(ctx: AppContext, who: Principal, search_id: int) -> None:
    for guard in _guards:
        try:
            guard.after_search(ctx, who, search_id)
        except Exception:  # never let oversight break a search that already ran
            log.exception("oversight after-search hook failed for search %s", search_id)
