"""The tables that make every server process stateless (migration 0012).

- ``pending_probes``: a probe photo held between the two steps of a web search (short time-to-live; deleted
  when used, and by the retention run when expired). Only the SHA-256 of its token is stored.
- ``searched_faces``: the aligned face a search compared, for its results page (short time-to-live).
- ``login_failures``: failed sign-ins per client address, for the address throttle (kept one window).
- ``stored_images`` (migration 0015): images of the ``postgres`` image store (cluster.image_store), by store
  name and SHA-256.
- ``gallery_changes``: one row per face added to, removed from or re-embedded in a gallery, appended by the
  face triggers in the transaction of the change; ``version`` is the gallery's ``faces_version`` after it.
  Never written by the application.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Integer, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from facetrail.storage.models import Base, utcnow


class PendingProbeRow(Base):
    __tablename__ = "pending_probes"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    data: Mapped[bytes] = mapped_column(LargeBinary)
    fields: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(index=True)


class SearchedFace(Base):
    __tablename__ = "searched_faces"

    search_id: Mapped[int] = mapped_column(ForeignKey("searches.id", ondelete="CASCADE"), primary_key=True)
    jpeg: Mapped[bytes] = mapped_column(LargeBinary)
    expires_at: Mapped[dt.datetime] = mapped_column(index=True)


class LoginFailure(Base):
    __tablename__ = "login_failures"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    address: Mapped[str] = mapped_column(String(100))
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class GalleryChange(Base):
    __tablename__ = "gallery_changes"
    __table_args__ = (UniqueConstraint("gallery_id", "version", name="uq_gallery_change_version"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    gallery_id: Mapped[int] = mapped_column(Integer)
    version: Mapped[int] = mapped_column(BigInteger)
    face_id: Mapped[int] = mapped_column(Integer)
    op: Mapped[str] = mapped_column(String(10))  # add | remove | update
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class StoredImage(Base):
    __tablename__ = "stored_images"

    store: Mapped[str] = mapped_column(String(20), primary_key=True)  # images | probes | probes-pending
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
