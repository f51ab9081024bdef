"""The retention tables (migration 0004): per-gallery rules, legal holds and subject dispositions.

They live here, beside the code that uses them, on the shared declarative base (so Alembic sees one schema).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from facetrail.storage.models import Base, utcnow


class RetentionRuleRow(Base):
    """A gallery's machine-applied retention rule (canonical JSON; see retention.rules.RetentionRule)."""

    __tablename__ = "retention_rules"

    gallery_id: Mapped[int] = mapped_column(ForeignKey("galleries.id", ondelete="CASCADE"), primary_key=True)
    rule: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_by: Mapped[str] = mapped_column(String(200))


class LegalHold(Base):
    """A hold on one subject (gallery + external id) or on one case number, in force until lifted."""

    __tablename__ = "legal_holds"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))  # subject | case
    gallery_id: Mapped[int | None] = mapped_column(ForeignKey("galleries.id", ondelete="RESTRICT"))
    external_id: Mapped[str | None] = mapped_column(String(200))
    case_number: Mapped[str | None] = mapped_column(String(100))
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(200))
    lifted_at: Mapped[dt.datetime | None] = mapped_column()
    lifted_by: Mapped[str | None] = mapped_column(String(200))
    lift_reason: Mapped[str | None] = mapped_column(Text)


Index("ix_legal_holds_subject", LegalHold.gallery_id, LegalHold.external_id)
Index("ix_legal_holds_case", LegalHold.case_number)


class SubjectDisposition(Base):
    """The outcome of a subject's record (no row: active). A rule may delete subjects with some outcomes."""

    __tablename__ = "subject_dispositions"

    subject_id: Mapped[int] = mapped_column(ForeignKey("subjects.id", ondelete="CASCADE"), primary_key=True)
    disposition: Mapped[str] = mapped_column(String(40))
    set_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    set_by: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(Text, default="")
