"""Enhanced copies of examination images: the log table (migration 0017), their image store, and their removal
with their originals.

Guarantees: a log row is written once and never changed, except ``image_stored`` (False once the derived image
was removed, under retention or with its original); the original is never touched. Each row holds the whole
chain from the original (``steps``), so the image it made can be made again from the original and this row
alone. A derived image lives no longer than its original (``remove_derived``, called by retention for probes and
by verifiable deletion for gallery images); the rows stay, so what was done remains on record.
The service (who may enhance, the API's functions) is facetrail.cases.enhancements.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from sqlalchemy import JSON, ForeignKey, Integer, String, Text, select, update
from sqlalchemy.orm import Mapped, mapped_column

from facetrail.gallery.imagestore import AnyImageStore, open_image_store
from facetrail.storage.models import Base, utcnow

if TYPE_CHECKING:
    from facetrail.context import AppContext

STORE = "enhanced"


class ImageEnhancement(Base):
    """One logged step: who applied which operation with which parameters to which image, when and why."""

    __tablename__ = "image_enhancements"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("examination_tasks.id", ondelete="CASCADE"), index=True)
    search_id: Mapped[int | None] = mapped_column(ForeignKey("searches.id", ondelete="CASCADE"), index=True)
    image_kind: Mapped[str] = mapped_column(String(16))  # probe | candidate
    handle: Mapped[str | None] = mapped_column(String(40))  # the candidate's handle in the task
    photo: Mapped[int] = mapped_column(Integer, default=0)  # which of the candidate's photos (0: the candidate's)
    face_id: Mapped[int | None] = mapped_column(Integer)  # the face whose image is the original (None: the probe)
    original_sha256: Mapped[str] = mapped_column(String(64), index=True)  # the untouched original
    parent_sha256: Mapped[str] = mapped_column(String(64))  # the image this step was applied to
    result_sha256: Mapped[str] = mapped_column(String(64), index=True)  # the derived image (PNG bytes)
    pixels_sha256: Mapped[str] = mapped_column(String(64))  # the derived image's pixels and shape
    step: Mapped[int] = mapped_column(Integer)  # 1 = applied to the original
    operation: Mapped[str] = mapped_column(String(20))
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON)  # normalised, as applied
    steps: Mapped[list[dict[str, Any]]] = mapped_column(JSON)  # the whole chain from the original, this step last
    purpose: Mapped[str] = mapped_column(Text)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    actor: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    image_stored: Mapped[bool] = mapped_column(default=True)


def enhanced_store(ctx: AppContext) -> AnyImageStore:
    return open_image_store(ctx, STORE)


def remove_derived(ctx: AppContext, original_sha256s: list[str], *, search_ids: list[int] | None = None) -> list[str]:
    """Remove the derived images of these originals (of these searches only, when given): mark their rows
    ``image_stored = False`` and delete each file no row that still keeps it refers to. Returns the hashes of
    the files removed. The log rows themselves stay (they are the record)."""
    if not original_sha256s:
        return []
    with ctx.db.transaction() as s:
        query = select(ImageEnhancement).where(
            ImageEnhancement.original_sha256.in_(original_sha256s), ImageEnhancement.image_stored.is_(True)
        )
        if search_ids is not None:
            query = query.where(ImageEnhancement.search_id.in_(search_ids))
        rows = list(s.execute(query).scalars())
        hashes = sorted({r.result_sha256 for r in rows})
        if rows:
            s.execute(
                update(ImageEnhancement)
                .where(ImageEnhancement.id.in_([r.id for r in rows]))
                .values(image_stored=False)
                .execution_options(synchronize_session=False)
            )
        kept = set(
            s.execute(
                select(ImageEnhancement.result_sha256).where(
                    ImageEnhancement.result_sha256.in_(hashes), ImageEnhancement.image_stored.is_(True)
                )
            ).scalars()
        )
    store = enhanced_store(ctx)
    return [sha for sha in hashes if sha not in kept and store.remove(sha)]
