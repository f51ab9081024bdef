"""The server's retention schedule: a daemon thread that runs the rules every ``retention.schedule_minutes``.

Runs use the server's own context (thread-safe engine, index cache locks) and the same per-subject
transactions as every deletion, so they are safe beside requests. They act as 'system:retention'.
"""

from __future__ import annotations

import logging

from facetrail.context import AppContext
from facetrail.periodic import PeriodicJob
from facetrail.retention.run import SYSTEM_ACTOR, run_retention

log = logging.getLogger(__name__)


class RetentionScheduler(PeriodicJob):
    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        settings = ctx.settings.retention
        super().__init__(
            "facetrail-retention",
            lambda: settings.schedule_minutes * 60,
            self._run,
            first_delay_seconds=settings.first_run_delay_seconds,
        )

    def _run(self) -> None:
        report = run_retention(self.ctx, dry_run=False, actor=SYSTEM_ACTOR, audit_empty=False)
        log.info("retention run: %s", report.to_dict()["summary"])
