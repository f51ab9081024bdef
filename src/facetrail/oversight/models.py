"""The oversight tables (migration 0011): the agency's case list, alerts, audit-sample draws and their items,
and queued e-mail notifications. They live beside the code that uses them, on the shared declarative base.

Alerts, draws and findings are also audit records (the chain is the evidence); these rows hold their state
(acknowledged, finding recorded, e-mail sent) so pages and reports need not scan the whole log.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from facetrail.storage.models import Base, SearchRecord, utcnow


class CaseEntry(Base):
    """One case of the agency's list (``facetrail case import``): open or closed, with its offense."""

    __tablename__ = "oversight_cases"

    case_number: Mapped[str] = mapped_column(String(100), primary_key=True)  # normalised (NFKC, trimmed)
    offense: Mapped[str] = mapped_column(String(100), default="")
    status: Mapped[str] = mapped_column(String(20))  # open | closed
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_by: Mapped[str] = mapped_column(String(200))


class Alert(Base):
    """An anomaly alert about one user. ``dedup_key`` makes each (rule, user, subject) alert once."""

    __tablename__ = "oversight_alerts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    rule: Mapped[str] = mapped_column(String(40), index=True)
    dedup_key: Mapped[str] = mapped_column(String(300), unique=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), index=True)
    unit_id: Mapped[int | None] = mapped_column(ForeignKey("units.id", ondelete="RESTRICT"), index=True)
    figures: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    audit_seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    acknowledged_at: Mapped[dt.datetime | None] = mapped_column()
    acknowledged_by: Mapped[str | None] = mapped_column(String(200))
    ack_note: Mapped[str] = mapped_column(Text, default="")


class SampleDraw(Base):
    """One period's draw: the seed record of the audit chain it was derived from and what it selected."""

    __tablename__ = "oversight_sample_draws"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    period: Mapped[str] = mapped_column(String(40), unique=True)  # e.g. week:2026-11-23
    period_start: Mapped[dt.datetime] = mapped_column()
    period_end: Mapped[dt.datetime] = mapped_column()
    seed_seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    seed_hash: Mapped[str] = mapped_column(String(64))
    checkpoint_seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    share: Mapped[float] = mapped_column()
    population: Mapped[int] = mapped_column(Integer)
    drawn_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    drawn_by: Mapped[str] = mapped_column(String(200))


class SampleItem(Base):
    """One drawn search and the auditor's finding on it (verdict None until recorded; recorded once)."""

    __tablename__ = "oversight_sample_items"
    __table_args__ = (UniqueConstraint("draw_id", "search_id", name="uq_sample_item"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    draw_id: Mapped[int] = mapped_column(ForeignKey("oversight_sample_draws.id", ondelete="RESTRICT"), index=True)
    search_id: Mapped[int] = mapped_column(Integer, index=True)
    unit_id: Mapped[int | None] = mapped_column(Integer, index=True)
    verdict: Mapped[str | None] = mapped_column(String(20))  # adequate | inadequate
    checks: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # case_real, justification_adequate, offense_right
    note: Mapped[str] = mapped_column(Text, default="")
    found_by: Mapped[str | None] = mapped_column(String(200))
    found_at: Mapped[dt.datetime | None] = mapped_column()


class Notification(Base):
    """An oversight e-mail, queued in the same transaction as its alert or draw and sent (with retries) later."""

    __tablename__ = "oversight_notifications"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))  # alert | sample
    ref: Mapped[str] = mapped_column(String(100))  # alert:ID | draw:ID
    unit_id: Mapped[int | None] = mapped_column(Integer, index=True)
    recipient: Mapped[str] = mapped_column(String(300))
    subject: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20), index=True)  # pending | sent | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str] = mapped_column(Text, default="")
    next_attempt_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[dt.datetime | None] = mapped_column()


# Limits and anomaly rules read one user's searches of a recent window on every search (migration 0011).
Index("ix_searches_user_id_created_at", SearchRecord.user_id, SearchRecord.created_at)
