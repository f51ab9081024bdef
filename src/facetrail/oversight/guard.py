"""The oversight guard installed at the search path's hook point (facetrail.cases.hooks).

Before a search: the policy's limits (skipped for the run of a reviewer-approved prior request: the approval
is the policy's answer to a search beyond its limits) and case verification. After a search: the searcher's
anomaly rules, queued to the background worker with the moment of the search.
"""

from __future__ import annotations

from facetrail.audit.log import append_audit
from facetrail.cases import hooks
from facetrail.cases.probe import SearchRequest
from facetrail.context import AppContext
from facetrail.governance.approvals import APPROVED, PRIOR
from facetrail.governance.models import SearchApproval
from facetrail.governance.policy import Policy
from facetrail.oversight.alerts import WORKER, now_of
from facetrail.oversight.cases import verify_case
from facetrail.oversight.limits import check_limits
from facetrail.policy.principal import Principal


def _approved_request(ctx: AppContext, approval_id: int | None) -> bool:
    if approval_id is None:
        return False
    with ctx.db.read() as s:
        row = s.get(SearchApproval, approval_id)
        return row is not None and row.kind == PRIOR and row.status == APPROVED


class OversightGuard:
    def before_search(
        self, ctx: AppContext, who: Principal, req: SearchRequest, policy: Policy, approval_id: int | None
    ) -> None:
        if not _approved_request(ctx, approval_id):
            check_limits(ctx, who, req.case_number, policy.limits, now_of(ctx))
        if policy.cases.verification == "off":
            return
        found = verify_case(
            ctx,
            req.case_number,
            req.offense,
            source=policy.cases.verification,
            check_offense=policy.cases.check_offense,
        )
        if not found.verified:  # the records system was unreachable and the settings fail open
            with ctx.db.transaction() as s:
                append_audit(
                    s,
                    actor=who.actor,
                    action="case.unverified",
                    target=f"case:{found.case_number}",
                    details={"reason": "records system unreachable; settings fail open", **who.audit_context()},
                )

    def after_search(self, ctx: AppContext, who: Principal, search_id: int) -> None:
        if who.user_id is not None and ctx.settings.oversight.detect_after_search:
            WORKER.submit(ctx, who.user_id, now_of(ctx))


def install() -> None:
    """Wire oversight into the search path (the server and the CLI call this at start-up)."""
    hooks.install_guard(OversightGuard())
