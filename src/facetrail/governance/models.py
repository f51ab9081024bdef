"""The governance tables (migration 0005): policy versions, training records and search approvals.

They live beside the code that uses them, on the shared declarative base (so Alembic sees one schema).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Date, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from facetrail.storage.models import Base, utcnow


class PolicyVersion(Base):
    """One applied policy document, exactly as written. The highest version is the one in force."""

    __tablename__ = "policy_versions"

    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    text: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class TrainingRecord(Base):
    """A user's completed search training, as recorded by an administrator. The newest completion counts."""

    __tablename__ = "training_records"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), index=True)
    completed_on: Mapped[dt.date] = mapped_column(Date)
    course: Mapped[str] = mapped_column(String(200))
    recorded_by: Mapped[str] = mapped_column(String(200))
    recorded_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class SearchApproval(Base):
    """A search that needs a reviewer's approval: a prior request (runs once approved) or an emergency search
    (ran at once; approved after the fact within the policy's window, else its results are locked)."""

    __tablename__ = "search_approvals"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))  # prior | emergency
    status: Mapped[str] = mapped_column(String(20), index=True)  # pending | approved | denied | expired
    requester_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), index=True)
    unit_id: Mapped[int | None] = mapped_column(ForeignKey("units.id", ondelete="RESTRICT"), index=True)
    gallery_name: Mapped[str] = mapped_column(String(200))
    case_number: Mapped[str] = mapped_column(String(100), index=True)
    offense: Mapped[str] = mapped_column(String(100))
    legal_basis: Mapped[str] = mapped_column(String(100))
    justification: Mapped[str] = mapped_column(Text)
    candidates: Mapped[int] = mapped_column(Integer)
    face_index: Mapped[int | None] = mapped_column(Integer)
    # 0017: what the requester declared the probe to be (carried to the search once approved)
    probe_declaration: Mapped[str] = mapped_column(String(20), default="original", server_default="original")
    probe_sha256: Mapped[str] = mapped_column(String(64))
    probe_held: Mapped[bool] = mapped_column(default=False)  # kept in the pending store until decided
    policy_version: Mapped[int | None] = mapped_column(Integer)
    search_id: Mapped[int | None] = mapped_column(ForeignKey("searches.id", ondelete="SET NULL"), index=True)
    requested_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # emergency: approve by then or its results lock; prior request: decide by then or it expires
    deadline: Mapped[dt.datetime | None] = mapped_column()
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    decided_at: Mapped[dt.datetime | None] = mapped_column()
    decision_reason: Mapped[str] = mapped_column(Text, default="")
