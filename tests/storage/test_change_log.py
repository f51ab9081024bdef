"""The gallery change log (migration 0010): appended by the face triggers in the transaction of every change,
numbered by the gallery's faces_version; a process's index catches up by the log alone (O(changes)), starts
from its snapshot plus the log tail, and falls back to the full verify-and-repair where the log has a gap."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest
from index_helpers import GALLERY_PHOTOS, create_gallery, enroll_photos
from sqlalchemy import delete, select, update

from facetrail.config import Settings
from facetrail.context import AppContext, open_context
from facetrail.gallery import index_sync
from facetrail.storage.cluster_models import GalleryChange
from facetrail.storage.models import Face, Gallery

PHOTOS = list(GALLERY_PHOTOS.items())


@contextmanager
def other_process(settings: Settings) -> Iterator[AppContext]:
    context = open_context(settings)
    try:
        yield context
    finally:
        context.close()


def log_rows(ctx: AppContext, gallery_id: int) -> list[tuple[int, int, str]]:
    with ctx.db.read() as session:
        rows = session.execute(
            select(GalleryChange.version, GalleryChange.face_id, GalleryChange.op)
            .where(GalleryChange.gallery_id == gallery_id)
            .order_by(GalleryChange.version)
        ).all()
    return [(int(v), int(f), str(o)) for v, f, o in rows]


@pytest.fixture
def no_full_read(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Records every full read of a gallery's rows (the O(gallery) path) instead of silently allowing it."""
    calls: list[int] = []
    real = index_sync.read_db_vectors

    def counting(session, gallery_id):  # type: ignore[no-untyped-def]
        calls.append(gallery_id)
        return real(session, gallery_id)

    monkeypatch.setattr(index_sync, "read_db_vectors", counting)
    return calls


def test_every_change_is_logged_in_its_own_transaction_with_gapless_versions(ctx: AppContext) -> None:
    gallery_id = create_gallery(ctx, "logged", ctx.pipeline.model_id)
    other = create_gallery(ctx, "other", ctx.pipeline.model_id)
    faces = enroll_photos(ctx, ctx.pipeline, gallery_id, dict(PHOTOS[:3]))
    with ctx.db.transaction() as session:
        session.execute(update(Face).where(Face.id == faces[0].face_id).values(embedding=faces[1].vector.tobytes()))
        session.execute(delete(Face).where(Face.id == faces[2].face_id))
    with pytest.raises(RuntimeError), ctx.db.transaction() as session:  # rolled back: nothing logged
        session.execute(delete(Face).where(Face.id == faces[1].face_id))
        raise RuntimeError("abandon")
    ids = [f.face_id for f in faces]
    assert log_rows(ctx, gallery_id) == [
        (1, ids[0], "add"),
        (2, ids[1], "add"),
        (3, ids[2], "add"),
        (4, ids[0], "update"),
        (5, ids[2], "remove"),
    ]
    assert log_rows(ctx, other) == []
    with ctx.db.read() as session:
        assert session.execute(select(Gallery.faces_version).where(Gallery.id == gallery_id)).scalar_one() == 5


def test_another_hosts_changes_are_applied_from_the_log_without_reading_the_gallery(
    ctx: AppContext, no_full_read: list[int]
) -> None:
    gallery_id = create_gallery(ctx, "live", ctx.pipeline.model_id)
    first = enroll_photos(ctx, ctx.pipeline, gallery_id, dict(PHOTOS[:4]))
    assert index_sync.get_gallery_index(ctx, gallery_id).count == 4  # first use: verified in full once
    no_full_read.clear()
    with other_process(ctx.settings) as host_b:
        late = enroll_photos(host_b, host_b.pipeline, gallery_id, dict(PHOTOS[4:6]))
        with host_b.db.transaction() as session:
            session.execute(delete(Face).where(Face.id == first[1].face_id))
    gi = index_sync.get_gallery_index(ctx, gallery_id)
    assert no_full_read == []  # caught up from the log alone
    assert gi.count == 5
    assert gi.search(late[1].vector, 1)[1][0] == late[1].face_id
    assert first[1].face_id not in gi.search(first[1].vector, 6)[1].tolist()
    assert index_sync.check_index(ctx, gallery_id, repair=False).consistent


def test_a_new_process_starts_from_its_snapshot_plus_the_log_tail(ctx: AppContext, no_full_read: list[int]) -> None:
    gallery_id = create_gallery(ctx, "snap", ctx.pipeline.model_id)
    enroll_photos(ctx, ctx.pipeline, gallery_id, dict(PHOTOS[:3]))
    index_sync.check_index(ctx, gallery_id, repair=True)  # saves a verified snapshot with its version
    with other_process(ctx.settings) as host_b:
        late = enroll_photos(host_b, host_b.pipeline, gallery_id, dict(PHOTOS[3:5]))
    no_full_read.clear()
    with other_process(ctx.settings) as fresh:
        gi = index_sync.get_gallery_index(fresh, gallery_id)
        assert no_full_read == []
        assert gi.count == 5 and gi.search(late[0].vector, 1)[1][0] == late[0].face_id
        assert index_sync.is_current(fresh, gallery_id)


def test_a_gap_in_the_log_falls_back_to_the_full_verify_and_repair(ctx: AppContext, no_full_read: list[int]) -> None:
    gallery_id = create_gallery(ctx, "gap", ctx.pipeline.model_id)
    first = enroll_photos(ctx, ctx.pipeline, gallery_id, dict(PHOTOS[:3]))
    index_sync.check_index(ctx, gallery_id, repair=True)
    with ctx.db.transaction() as session:
        session.execute(delete(Face).where(Face.id == first[0].face_id))
    ctx.settings.cluster.change_log_days = 0  # retention trims every entry: the removal is no longer logged
    try:
        assert index_sync.trim_change_log(ctx) >= 4
    finally:
        ctx.settings.cluster.change_log_days = 7
    assert log_rows(ctx, gallery_id) == []
    no_full_read.clear()
    with other_process(ctx.settings) as fresh:
        gi = index_sync.get_gallery_index(fresh, gallery_id)
        assert no_full_read == [gallery_id]  # the gap was noticed: verified and repaired in full
        assert gi.count == 2 and first[0].face_id not in gi.search(first[0].vector, 3)[1].tolist()


def test_trimming_keeps_recent_entries_and_drops_deleted_galleries(ctx: AppContext) -> None:
    keep = create_gallery(ctx, "keep", ctx.pipeline.model_id)
    gone = create_gallery(ctx, "gone", ctx.pipeline.model_id)
    enroll_photos(ctx, ctx.pipeline, keep, dict(PHOTOS[:2]))
    enroll_photos(ctx, ctx.pipeline, gone, dict(PHOTOS[2:3]))
    with ctx.db.transaction() as session:
        session.execute(delete(Face).where(Face.gallery_id == gone))
        session.execute(delete(Gallery).where(Gallery.id == gone))
        old = dt.datetime.now(dt.UTC) - dt.timedelta(days=30)
        session.execute(update(GalleryChange).where(GalleryChange.version == 1).values(at=old))
    assert len(log_rows(ctx, gone)) == 2
    assert index_sync.trim_change_log(ctx) == 3  # keep's first entry (old) and both of the deleted gallery's
    assert [v for v, _, _ in log_rows(ctx, keep)] == [2]
    assert log_rows(ctx, gone) == []


def test_catching_up_twice_or_over_own_additions_changes_nothing(ctx: AppContext) -> None:
    gallery_id = create_gallery(ctx, "idem", ctx.pipeline.model_id)
    faces = enroll_photos(ctx, ctx.pipeline, gallery_id, dict(PHOTOS[:3]))
    gi = index_sync.get_gallery_index(ctx, gallery_id)
    more = enroll_photos(ctx, ctx.pipeline, gallery_id, dict(PHOTOS[3:4]))  # already added by this process
    gi = index_sync.get_gallery_index(ctx, gallery_id)
    assert gi.count == 4
    assert index_sync.catch_up(ctx, gi) and gi.count == 4
    query = np.stack([f.vector for f in [*faces, *more]])
    assert [int(gi.search(q, 1)[1][0]) for q in query] == [f.face_id for f in [*faces, *more]]


def test_a_face_deleted_on_another_host_leaves_this_hosts_snapshot_at_catch_up(ctx: AppContext) -> None:
    gallery_id = create_gallery(ctx, "purge", ctx.pipeline.model_id)
    faces = enroll_photos(ctx, ctx.pipeline, gallery_id, dict(PHOTOS[:3]))
    index_sync.get_gallery_index(ctx, gallery_id)
    index_path, _ = index_sync.index_paths(ctx, gallery_id, "exact")
    gone = faces[1].vector.astype("<f4").tobytes()
    assert gone in index_path.read_bytes()
    other = ctx.settings.model_copy(update={"data_dir": ctx.settings.data_dir.parent / "host-b"})
    # host B has its own data folder: it cannot touch this host's files
    with other_process(other) as host_b, host_b.db.transaction() as session:
        session.execute(delete(Face).where(Face.id == faces[1].face_id))
    index_sync.get_gallery_index(ctx, gallery_id)  # what the next search or the periodic sync does
    assert gone not in index_path.read_bytes()
