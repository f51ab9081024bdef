"""galleries.faces_version (migration 0006): database triggers bump it with every change to a gallery's faces,
whoever makes it, and the loaded index notices the change before the next search."""

from __future__ import annotations

import numpy as np
import pytest
from index_helpers import GALLERY_PHOTOS, create_gallery, enroll_photos
from sqlalchemy import delete, select, update

from facetrail.context import AppContext, open_context
from facetrail.gallery import index_sync
from facetrail.storage.models import Face, Gallery, Subject


def version(ctx: AppContext, gallery_id: int) -> int:
    with ctx.db.read() as session:
        return int(session.execute(select(Gallery.faces_version).where(Gallery.id == gallery_id)).scalar_one())


def test_every_face_insert_and_delete_bumps_only_its_gallery(ctx: AppContext) -> None:
    photos = list(GALLERY_PHOTOS.items())
    first = create_gallery(ctx, "first", ctx.pipeline.model_id)
    other = create_gallery(ctx, "other", ctx.pipeline.model_id)
    assert version(ctx, first) == version(ctx, other) == 0
    faces = enroll_photos(ctx, ctx.pipeline, first, dict(photos[:3]))
    assert version(ctx, first) == 3 and version(ctx, other) == 0
    with ctx.db.transaction() as session:
        session.execute(delete(Face).where(Face.id == faces[0].face_id))
    assert version(ctx, first) == 4
    with pytest.raises(RuntimeError), ctx.db.transaction() as session:  # rolled back: no bump either
        session.execute(delete(Face).where(Face.id == faces[1].face_id))
        raise RuntimeError("abandon the transaction")
    assert version(ctx, first) == 4 and version(ctx, other) == 0


def test_a_subject_deleted_by_hand_is_gone_from_the_next_search(ctx: AppContext) -> None:
    """The faces go by ON DELETE CASCADE, which no application code sees; the triggers still do."""
    gallery_id = create_gallery(ctx, "cascade", ctx.pipeline.model_id)
    faces = enroll_photos(ctx, ctx.pipeline, gallery_id, dict(list(GALLERY_PHOTOS.items())[:3]))
    assert index_sync.get_gallery_index(ctx, gallery_id).count == 3
    gone = faces[1]
    other = open_context(ctx.settings)  # another process
    try:
        with other.db.transaction() as session:
            session.execute(
                delete(Subject).where(Subject.external_id == gone.subject_external_id, Subject.gallery_id == gallery_id)
            )
    finally:
        other.close()
    gi = index_sync.get_gallery_index(ctx, gallery_id)
    assert gi.count == 2
    assert gone.face_id not in gi.search(gone.vector, 3)[1].tolist()


def test_an_embedding_changed_by_hand_is_searched_as_changed(ctx: AppContext) -> None:
    gallery_id = create_gallery(ctx, "reembed", ctx.pipeline.model_id)
    faces = enroll_photos(ctx, ctx.pipeline, gallery_id, dict(list(GALLERY_PHOTOS.items())[:3]))
    before = version(ctx, gallery_id)
    index_sync.get_gallery_index(ctx, gallery_id)
    swapped = faces[1].vector.astype("<f4")
    with ctx.db.transaction() as session:  # face 0 now carries face 1's embedding
        session.execute(update(Face).where(Face.id == faces[0].face_id).values(embedding=swapped.tobytes()))
    assert version(ctx, gallery_id) == before + 1
    scores, ids = index_sync.get_gallery_index(ctx, gallery_id).search(np.asarray(swapped, np.float32), 2)
    assert sorted(ids.tolist()) == sorted([faces[0].face_id, faces[1].face_id])
    assert scores.tolist() == pytest.approx([1.0, 1.0], abs=1e-4)


def test_a_gallery_with_faces_can_still_be_deleted(ctx: AppContext) -> None:
    gallery_id = create_gallery(ctx, "doomed", ctx.pipeline.model_id)
    enroll_photos(ctx, ctx.pipeline, gallery_id, dict(list(GALLERY_PHOTOS.items())[:2]))
    with ctx.db.transaction() as session:
        session.execute(delete(Gallery).where(Gallery.id == gallery_id))
    with ctx.db.read() as session:
        assert session.execute(select(Face.id).where(Face.gallery_id == gallery_id)).first() is None
