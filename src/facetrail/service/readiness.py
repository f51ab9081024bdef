"""Whether a server process may take searches: the database answers and every gallery's index is loaded and
mirrors the database's latest version. A load balancer polls ``/api/v1/ready``.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from sqlalchemy import select, text

from facetrail.context import AppContext
from facetrail.gallery.index_sync import IndexSyncError, get_gallery_index, is_current, load_all_indexes
from facetrail.storage.models import Gallery

log = logging.getLogger(__name__)


class IndexWarmup:
    """Loads every gallery's index once at start (snapshot + change log), in the background, then keeps them
    current every ``cluster.index_sync_seconds``: another host's deletions leave this host's memory and index
    snapshots within that time even if no search comes here."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.done = threading.Event()
        self.stopping = threading.Event()
        self.error: str | None = None

    def run(self) -> None:
        try:
            count = load_all_indexes(self.ctx)
            log.info("indexes of %d galleries loaded", count)
        except Exception as exc:  # readiness reports it; a later check retries gallery by gallery
            log.exception("loading the gallery indexes failed")
            self.error = type(exc).__name__
        finally:
            self.done.set()
        interval = self.ctx.settings.cluster.index_sync_seconds
        while interval > 0 and not self.stopping.wait(interval):
            try:
                load_all_indexes(self.ctx)  # O(changes) per gallery once loaded
            except Exception:  # logged; the next round (or the next search) tries again
                log.exception("keeping the gallery indexes current failed")

    def stop(self) -> None:
        self.stopping.set()


@dataclass(frozen=True)
class Readiness:
    ready: bool
    reason: str
    galleries: int = 0


def readiness(ctx: AppContext, warmup: IndexWarmup | None) -> Readiness:
    try:
        with ctx.db.read() as session:
            session.execute(text("SELECT 1"))
            gallery_ids = list(session.execute(select(Gallery.id)).scalars())
    except Exception as exc:
        return Readiness(False, f"database unreachable ({type(exc).__name__})")
    if warmup is not None and not warmup.done.is_set():
        return Readiness(False, "gallery indexes are still loading")
    for gallery_id in gallery_ids:
        if is_current(ctx, gallery_id):
            continue
        try:
            get_gallery_index(ctx, gallery_id)  # catches up from the change log (O(changes))
        except IndexSyncError:
            continue  # deleted since it was listed
        except Exception as exc:
            return Readiness(False, f"index of gallery {gallery_id} could not be loaded ({type(exc).__name__})")
    return Readiness(True, "ready", len(gallery_ids))
