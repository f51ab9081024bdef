"""The full index check on the server's schedule (gallery/index_check.py, ``cluster.index_check_hours``): drift
the change log cannot show is found and repaired (a row removed behind the application's back with its log
entry; a face lost from a running process's index and snapshot), audited as 'system:index-check'; the schedule
is off at 0 and starts and stops with the server."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from index_helpers import GALLERY_PHOTOS, create_gallery, enroll_photos
from sqlalchemy import delete, select

from facetrail.config import Settings
from facetrail.context import AppContext, open_context
from facetrail.gallery import index_sync
from facetrail.gallery.index_check import SYSTEM_ACTOR, IndexCheckScheduler, check_all_indexes
from facetrail.storage.cluster_models import GalleryChange
from facetrail.storage.models import AuditRecord, Face

PHOTOS = dict(list(GALLERY_PHOTOS.items())[:4])


def remove_behind_its_back(ctx: AppContext, face_id: int) -> None:
    """Delete a face row and its change-log entry directly: no process can learn of it from the log."""
    with ctx.db.transaction() as session:
        session.execute(delete(Face).where(Face.id == face_id))
        session.execute(delete(GalleryChange).where(GalleryChange.face_id == face_id))


def repairs(ctx: AppContext) -> list[tuple[str, dict]]:  # type: ignore[type-arg]
    with ctx.db.read() as session:
        rows = session.execute(
            select(AuditRecord.actor, AuditRecord.details)
            .where(AuditRecord.action == "index.repair")
            .order_by(AuditRecord.seq)
        ).all()
    return [(actor, json.loads(d) if isinstance(d, str) else d) for actor, d in rows]


def test_check_all_indexes_reports_without_repairing_then_repairs(ctx: AppContext) -> None:
    gallery_id = create_gallery(ctx, "bookings", ctx.pipeline.model_id)
    faces = enroll_photos(ctx, ctx.pipeline, gallery_id, PHOTOS)
    assert check_all_indexes(ctx, repair=False).consistent
    remove_behind_its_back(ctx, faces[1].face_id)
    found = check_all_indexes(ctx, repair=False)
    assert not found.consistent and found.summary()["mismatched"] == ["bookings"]
    assert found.summary()["repaired"] == [] and repairs(ctx) == []
    fixed = check_all_indexes(ctx, actor="operator")
    assert fixed.summary()["repaired"] == ["bookings"]
    assert [actor for actor, _ in repairs(ctx)] == ["operator"]
    assert check_all_indexes(ctx, repair=False).consistent


def test_the_schedule_repairs_the_running_process_index(settings: Settings) -> None:
    settings = settings.model_copy(
        update={"cluster": settings.cluster.model_copy(update={"index_check_hours": 0.5 / 3600})}
    )
    ctx = open_context(settings)
    scheduler = IndexCheckScheduler(ctx)
    try:
        gallery_id = create_gallery(ctx, "bookings", ctx.pipeline.model_id)
        faces = enroll_photos(ctx, ctx.pipeline, gallery_id, PHOTOS)
        lost = faces[2]
        gi = index_sync.get_gallery_index(ctx, gallery_id)
        with gi.lock:  # this process's index (and its snapshot) lost a face whose row is in the database
            gi.index.remove([lost.face_id])  # type: ignore[union-attr]
            index_sync.save_gallery_index(ctx, gi)
        # nothing in the change log tells this process: its searches miss the face
        assert lost.face_id not in index_sync.get_gallery_index(ctx, gallery_id).search(lost.vector, 10)[1]
        assert scheduler.start()
        for _ in range(240):  # each run sets the event; wait for one that saw the removal
            assert scheduler.ran.wait(timeout=60), "no scheduled run"
            scheduler.ran.clear()
            if repairs(ctx):
                break
        (actor, details), *_ = repairs(ctx)
        assert actor == SYSTEM_ACTOR and details["repaired"] and details["gallery_id"] == gallery_id
        gi = index_sync.get_gallery_index(ctx, gallery_id)
        assert gi.search(lost.vector, 1)[1][0] == lost.face_id
        assert gi.count == len(faces)
    finally:
        scheduler.stop()
        ctx.close()


def test_the_schedule_is_off_at_zero(ctx: AppContext) -> None:
    ctx.settings.cluster.index_check_hours = 0
    scheduler = IndexCheckScheduler(ctx)
    assert not scheduler.start()
    scheduler.stop()


@pytest.mark.parametrize("hours", [24.0, 0.0])
def test_the_server_starts_the_schedule(settings: Settings, hours: float) -> None:
    from facetrail.service.app import create_app

    settings = settings.model_copy(update={"cluster": settings.cluster.model_copy(update={"index_check_hours": hours})})
    ctx = open_context(settings)
    try:
        with TestClient(create_app(ctx)) as client:
            assert client.get("/api/v1/health").status_code == 200
            scheduler = client.app.state.index_check_scheduler  # type: ignore[attr-defined]
            assert isinstance(scheduler, IndexCheckScheduler)
            assert (scheduler._thread is not None) == (hours > 0)
            thread = scheduler._thread
        assert thread is None or not thread.is_alive()  # stopped with the server
    finally:
        ctx.close()
