"""The full verify-and-repair of every gallery's index, on demand (``facetrail index check``) and on the server's
schedule (every ``cluster.index_check_hours``).

Between checks each process follows the gallery change log (O(changes), gallery/index_sync.py); the full check
is the backstop that compares every face id and embedding with the database (O(gallery)) and repairs what
differs. Guarantees:

- Each gallery's saved snapshot is loaded afresh, brought forward by the change log as a starting process
  would, compared in full with the database and, on a mismatch, repaired, saved and audited ('index.repair',
  by check_index). The process then searches with the verified copy.
- Stale index files (of deleted galleries, or of another index kind) may hold vectors of deleted faces: they
  are removed when repairing (audited 'index.remove_stale').
- A scheduled run acts as 'system:index-check'. It records nothing when everything matched (a log line only);
  a failed run is logged and the next one retries. Every process of every host checks its own copy: they do
  not share memory or data folders. Runs start one interval after the server starts, so processes started
  together spread their checks over time by how their runs last.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select

from facetrail.context import AppContext
from facetrail.gallery.index_sync import (
    IndexCheck,
    IndexSyncError,
    check_index,
    remove_stale_index_files,
    stale_index_files,
)
from facetrail.periodic import PeriodicJob
from facetrail.storage.models import Gallery

log = logging.getLogger(__name__)

SYSTEM_ACTOR = "system:index-check"


@dataclass
class IndexCheckRun:
    """What one check of every gallery found (and repaired)."""

    checks: list[tuple[str, IndexCheck]] = field(default_factory=list)  # (gallery name, check)
    stale_files: list[Path] = field(default_factory=list)
    repair: bool = True

    @property
    def consistent(self) -> bool:
        return all(check.consistent for _, check in self.checks) and not self.stale_files

    def summary(self) -> dict[str, object]:
        return {
            "galleries": len(self.checks),
            "mismatched": [name for name, check in self.checks if not check.consistent],
            "repaired": [name for name, check in self.checks if check.repaired],
            "stale_files": [p.name for p in self.stale_files],
        }


def check_all_indexes(ctx: AppContext, *, repair: bool = True, actor: str = SYSTEM_ACTOR) -> IndexCheckRun:
    """Check (and, unless ``repair`` is False, repair) every gallery's index and find stale index files."""
    with ctx.db.read() as session:
        galleries = [
            (int(g), str(n)) for g, n in session.execute(select(Gallery.id, Gallery.name).order_by(Gallery.id))
        ]
    run = IndexCheckRun(repair=repair)
    for gallery_id, name in galleries:
        with contextlib.suppress(IndexSyncError):  # deleted since it was listed
            run.checks.append((name, check_index(ctx, gallery_id, repair=repair, actor=actor)))
    run.stale_files = remove_stale_index_files(ctx, actor=actor) if repair else stale_index_files(ctx)
    return run


class IndexCheckScheduler(PeriodicJob):
    """Runs ``check_all_indexes`` every ``cluster.index_check_hours`` (0: off)."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.last_run: IndexCheckRun | None = None
        super().__init__("facetrail-index-check", lambda: ctx.settings.cluster.index_check_hours * 3600, self._run)

    def _run(self) -> None:
        self.last_run = check_all_indexes(self.ctx)
        summary = self.last_run.summary()
        if self.last_run.consistent:
            log.info("scheduled index check: %s", summary)
        else:
            log.warning("scheduled index check found mismatches (repaired): %s", summary)
