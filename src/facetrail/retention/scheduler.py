"""The server's retention schedule: a daemon thread that runs the rules every ``retention.schedule_minutes``.

Runs use the server's own context (thread-safe engine, index cache locks) and the same per-subject
transactions as every deletion, so they are safe beside requests. They act as 'system:retention'.
"""

from __future__ import annotations

import logging
import threading

from facetrail.context import AppContext
from facetrail.retention.run import SYSTEM_ACTOR, run_retention

log = logging.getLogger(__name__)


class RetentionScheduler:
    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.runs = 0

    def start(self) -> bool:
        """Start the thread unless the schedule is off (0 minutes); True if it started."""
        if self.ctx.settings.retention.schedule_minutes <= 0:
            return False
        self._thread = threading.Thread(target=self._loop, name="facetrail-retention", daemon=True)
        self._thread.start()
        return True

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _loop(self) -> None:
        settings = self.ctx.settings.retention
        wait = settings.first_run_delay_seconds
        while not self._stop.wait(wait):
            try:
                report = run_retention(self.ctx, dry_run=False, actor=SYSTEM_ACTOR, audit_empty=False)
                log.info("retention run: %s", report.to_dict()["summary"])
            except Exception:  # the schedule goes on; the failure is logged, the next run retries
                log.exception("scheduled retention run failed")
            self.runs += 1
            wait = settings.schedule_minutes * 60
