"""The gallery index stays in step with the database: persisted, checked at load, repaired, rebuilt."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest
from index_helpers import GALLERY_PHOTOS, EnrolledFace, create_gallery, enroll_photos
from sqlalchemy import delete, select

from facetrail.config import IndexSettings, Settings
from facetrail.context import AppContext, open_context
from facetrail.gallery import index_sync
from facetrail.storage.cluster_models import GalleryChange
from facetrail.storage.models import AuditRecord, Face, Gallery


@contextmanager
def fresh_process(settings: Settings) -> Iterator[AppContext]:
    """A second AppContext on the same data: what another process (or a restart) sees."""
    context = open_context(settings)
    try:
        yield context
    finally:
        context.close()


@pytest.fixture
def enrolled(ctx: AppContext) -> tuple[int, list[EnrolledFace]]:
    gallery_id = create_gallery(ctx, "bookings", ctx.pipeline.model_id)
    return gallery_id, enroll_photos(ctx, ctx.pipeline, gallery_id, GALLERY_PHOTOS)


def top_ids(ctx: AppContext, gallery_id: int, queries: list[np.ndarray], k: int = 3) -> list[list[int]]:
    gi = index_sync.get_gallery_index(ctx, gallery_id)
    return [gi.search(q, k)[1].tolist() for q in queries]


def test_enrolled_faces_are_indexed_and_persisted(ctx: AppContext, enrolled: tuple[int, list[EnrolledFace]]) -> None:
    gallery_id, faces = enrolled
    gi = index_sync.get_gallery_index(ctx, gallery_id)
    assert gi.count == len(GALLERY_PHOTOS)
    for face in faces:
        scores, ids = gi.search(face.vector, 1)
        assert ids[0] == face.face_id and scores[0] == pytest.approx(1.0, abs=1e-4)
    index_path, meta_path = index_sync.index_paths(ctx, gallery_id, "exact")
    meta = json.loads(meta_path.read_text())
    assert index_path.exists()
    assert meta["count"] == len(faces) and meta["model_id"] == ctx.pipeline.model_id and meta["kind"] == "exact"
    # a restarted process loads the file and finds it consistent with the database (no repair)
    with fresh_process(ctx.settings) as other:
        check = index_sync.check_index(other, gallery_id, repair=False)
        assert check.consistent, check.problems
        assert check.index_count == check.db_count == len(faces)


def test_add_faces_twice_is_idempotent(ctx: AppContext, enrolled: tuple[int, list[EnrolledFace]]) -> None:
    gallery_id, faces = enrolled
    added = index_sync.add_faces(ctx, gallery_id, [f.face_id for f in faces], np.stack([f.vector for f in faces]))
    assert added == 0
    assert index_sync.get_gallery_index(ctx, gallery_id).count == len(faces)


def test_remove_faces_removes_the_vector(ctx: AppContext, enrolled: tuple[int, list[EnrolledFace]]) -> None:
    gallery_id, faces = enrolled
    gone = faces[0]
    with ctx.db.transaction() as session:
        session.execute(delete(Face).where(Face.id == gone.face_id))
    assert index_sync.remove_faces(ctx, gallery_id, [gone.face_id]) == 1
    gi = index_sync.get_gallery_index(ctx, gallery_id)
    assert gi.count == len(faces) - 1
    assert gone.face_id not in gi.search(gone.vector, len(faces))[1].tolist()
    with fresh_process(ctx.settings) as other:  # and the saved file agrees
        assert index_sync.check_index(other, gallery_id, repair=False).consistent


def test_check_detects_and_repairs_a_row_deleted_behind_its_back(
    ctx: AppContext, enrolled: tuple[int, list[EnrolledFace]]
) -> None:
    gallery_id, faces = enrolled
    gone = faces[2]
    with ctx.db.transaction() as session:  # deleted directly in the database, and its change-log entry too:
        session.execute(delete(Face).where(Face.id == gone.face_id))  # the index file still has it
        session.execute(delete(GalleryChange).where(GalleryChange.face_id == gone.face_id))
    with fresh_process(ctx.settings) as other:
        report = index_sync.check_index(other, gallery_id, repair=False)
        assert not report.consistent and not report.repaired
        assert report.db_count == len(faces) - 1 and report.index_count == len(faces)
        assert any("checksum" in p for p in report.problems)
        repaired = index_sync.check_index(other, gallery_id, repair=True)
        assert repaired.repaired
        assert index_sync.check_index(other, gallery_id, repair=False).consistent
        assert gone.face_id not in top_ids(other, gallery_id, [gone.vector], k=len(faces))[0]
        with other.db.read() as session:
            actions = session.execute(select(AuditRecord.action)).scalars().all()
        assert "index.repair" in actions


def test_a_corrupt_index_file_is_detected_and_rebuilt_at_load(
    ctx: AppContext, enrolled: tuple[int, list[EnrolledFace]]
) -> None:
    gallery_id, faces = enrolled
    index_path, _ = index_sync.index_paths(ctx, gallery_id, "exact")
    data = bytearray(index_path.read_bytes())
    data[-7] ^= 0xFF  # flip bits inside the last stored vector
    index_path.write_bytes(bytes(data))
    with fresh_process(ctx.settings) as other:
        report = index_sync.check_index(other, gallery_id, repair=False)
        assert not report.consistent
        # first use in a process loads, detects and repairs before answering
        gi = index_sync.get_gallery_index(other, gallery_id)
        assert [gi.search(f.vector, 1)[1][0] for f in faces] == [f.face_id for f in faces]
        assert index_sync.check_index(other, gallery_id, repair=False).consistent


def test_truncated_index_file_is_reported(ctx: AppContext, enrolled: tuple[int, list[EnrolledFace]]) -> None:
    gallery_id, _ = enrolled
    index_path, _ = index_sync.index_paths(ctx, gallery_id, "exact")
    index_path.write_bytes(index_path.read_bytes()[:100])
    with fresh_process(ctx.settings) as other:
        report = index_sync.check_index(other, gallery_id, repair=True)
        assert report.repaired and any("unreadable" in p for p in report.problems)
        assert index_sync.check_index(other, gallery_id, repair=False).consistent


def test_rebuild_gives_the_same_results(ctx: AppContext, enrolled: tuple[int, list[EnrolledFace]]) -> None:
    gallery_id, faces = enrolled
    queries = [f.vector for f in faces]
    before = top_ids(ctx, gallery_id, queries, k=4)
    report = index_sync.rebuild_index(ctx, gallery_id, actor="t")
    assert report.consistent and report.index_count == len(faces)
    assert top_ids(ctx, gallery_id, queries, k=4) == before
    with ctx.db.read() as session:
        details = session.execute(select(AuditRecord.details).where(AuditRecord.action == "index.rebuild")).scalar_one()
    assert json.loads(details)["count"] == len(faces)


def test_another_process_enrolling_is_seen_before_the_next_search(ctx: AppContext) -> None:
    gallery_id = create_gallery(ctx, "live", ctx.pipeline.model_id)
    photos = list(GALLERY_PHOTOS.items())
    enroll_photos(ctx, ctx.pipeline, gallery_id, dict(photos[:3]))
    assert index_sync.get_gallery_index(ctx, gallery_id).count == 3
    with fresh_process(ctx.settings) as other:
        late = enroll_photos(other, ctx.pipeline, gallery_id, dict(photos[3:5]))
    gi = index_sync.get_gallery_index(ctx, gallery_id)  # this process's copy is refreshed from the database
    assert gi.count == 5
    assert gi.search(late[0].vector, 1)[1][0] == late[0].face_id


def test_approximate_index_from_config(tmp_path, database_url: str) -> None:  # type: ignore[no-untyped-def]
    params = {"nlist": 2, "nprobe": 2, "rerank": 8, "min_train_size": 4, "codec": "sq8"}  # sq8: trains on 8 faces
    settings = Settings(  # type: ignore[call-arg]
        data_dir=tmp_path / "data", database_url=database_url, index=IndexSettings(kind="approximate", params=params)
    )
    with fresh_process(settings) as context:
        gallery_id = create_gallery(context, "big", context.pipeline.model_id)
        faces = enroll_photos(context, context.pipeline, gallery_id, GALLERY_PHOTOS)
        _, meta_path = index_sync.index_paths(context, gallery_id, "approximate")
        assert json.loads(meta_path.read_text())["kind"] == "approximate"
        assert [top_ids(context, gallery_id, [f.vector], k=1)[0][0] for f in faces] == [f.face_id for f in faces]
        assert index_sync.check_index(context, gallery_id, repair=False).consistent


def test_a_reused_face_id_is_not_mistaken_for_the_old_face(ctx: AppContext) -> None:
    """SQLite hands out max(id)+1 again after the newest row is deleted: same count, sum and max of ids."""
    gallery_id = create_gallery(ctx, "reuse", ctx.pipeline.model_id)
    photos = list(GALLERY_PHOTOS.items())
    first = enroll_photos(ctx, ctx.pipeline, gallery_id, dict(photos[:3]))
    assert index_sync.get_gallery_index(ctx, gallery_id).count == 3
    with fresh_process(ctx.settings) as other:
        with other.db.transaction() as session:
            session.execute(delete(Face).where(Face.id == first[-1].face_id))
        [replacement] = enroll_photos(other, ctx.pipeline, gallery_id, dict(photos[5:6]))
    if ctx.db.is_sqlite:
        assert replacement.face_id == first[-1].face_id  # the case this test is about
    gi = index_sync.get_gallery_index(ctx, gallery_id)
    scores, ids = gi.search(replacement.vector, 1)
    assert ids[0] == replacement.face_id and scores[0] == pytest.approx(1.0, abs=1e-4)
    assert gi.search(first[-1].vector, 1)[0][0] < 0.9  # the deleted face's vector is gone
    assert index_sync.check_index(ctx, gallery_id, repair=False).consistent


def test_stale_index_files_are_found_and_removed(ctx: AppContext, enrolled: tuple[int, list[EnrolledFace]]) -> None:
    """Files the sync no longer maintains (another kind after a config change, a deleted gallery) may hold
    vectors of deleted faces: `index check` finds and removes them."""
    gallery_id, _ = enrolled
    exact_files = set(index_sync.index_paths(ctx, gallery_id, "exact"))
    assert index_sync.stale_index_files(ctx) == []
    approximate = ctx.settings.model_copy(update={"index": IndexSettings(kind="approximate", params={"codec": "sq8"})})
    with fresh_process(approximate) as other:
        index_sync.get_gallery_index(other, gallery_id)  # builds the approximate index from the database
        assert set(index_sync.stale_index_files(other)) == exact_files
        assert set(index_sync.remove_stale_index_files(other, actor="t")) == exact_files
        assert not any(p.exists() for p in exact_files)
        assert index_sync.stale_index_files(other) == []
        with other.db.transaction() as session:  # a gallery removed from the database leaves its files stale
            session.execute(delete(Face))
            session.execute(delete(Gallery))
        assert set(index_sync.stale_index_files(other)) == set(index_sync.index_paths(other, gallery_id, "approximate"))
    with ctx.db.read() as session:
        assert session.execute(select(AuditRecord.action).where(AuditRecord.action == "index.remove_stale")).scalar()
