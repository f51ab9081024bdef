"""The server's oversight schedule: every ``oversight.schedule_minutes`` a daemon thread scans recently active
users for anomalies, draws the last completed sampling period (once a checkpoint covers its end) and sends due
e-mails. It acts as 'system:oversight'; a failed run is logged and retried at the next tick."""

from __future__ import annotations

import logging
import threading

from facetrail.context import AppContext
from facetrail.oversight import alerts, notify, sampling

log = logging.getLogger(__name__)


def run_once(ctx: AppContext) -> dict[str, object]:
    created = alerts.scan(ctx)
    try:
        drawn = sampling.draw_due(ctx, actor=alerts.SYSTEM_ACTOR)
    except sampling.SampleNotReadyError:
        drawn = None  # no checkpoint since the period ended yet: the next tick tries again
    sent = notify.flush(ctx)
    return {"alerts": len(created), "draw": drawn["period"] if drawn else None, "emails": sent}


class OversightScheduler:
    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> bool:
        if self.ctx.settings.oversight.schedule_minutes <= 0:
            return False
        self._thread = threading.Thread(target=self._loop, name="facetrail-oversight-schedule", daemon=True)
        self._thread.start()
        return True

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _loop(self) -> None:
        while not self._stop.wait(self.ctx.settings.oversight.schedule_minutes * 60):
            try:
                log.info("oversight run: %s", run_once(self.ctx))
            except Exception:
                log.exception("scheduled oversight run failed")
