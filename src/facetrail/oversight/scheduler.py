"""The server's oversight schedule: every ``oversight.schedule_minutes`` a daemon thread scans recently active
users for anomalies, draws the last completed sampling period (once a checkpoint covers its end) and sends due
e-mails. It acts as 'system:oversight'; a failed run is logged and retried at the next tick."""

from __future__ import annotations

import logging

from facetrail.context import AppContext
from facetrail.oversight import alerts, notify, sampling
from facetrail.periodic import PeriodicJob

log = logging.getLogger(__name__)


def run_once(ctx: AppContext) -> dict[str, object]:
    created = alerts.scan(ctx)
    try:
        drawn = sampling.draw_due(ctx, actor=alerts.SYSTEM_ACTOR)
    except sampling.SampleNotReadyError:
        drawn = None  # no checkpoint since the period ended yet: the next tick tries again
    sent = notify.flush(ctx)
    return {"alerts": len(created), "draw": drawn["period"] if drawn else None, "emails": sent}


class OversightScheduler(PeriodicJob):
    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        super().__init__(
            "facetrail-oversight-schedule", lambda: ctx.settings.oversight.schedule_minutes * 60, self._run
        )

    def _run(self) -> None:
        log.info("oversight run: %s", run_once(self.ctx))
