"""Tables of the examination method (migration 0016). Only facetrail.examination writes them.

- ``examination_tasks``: one reviewer's examination of one search (or of a known-answer test), assigned by the
  system; ``public_id`` is the opaque handle the API uses (a live task and a known-answer test look alike).
- ``probe_analyses``: the reviewer's analysis of the probe alone, recorded once and locked.
- ``examined_candidates``: per task and candidate: the opaque handle, the order shown and the order seen, the
  FISWG checklist, annotations, measurements, and the conclusion with its reasoning and limitations.
- ``known_answer_tests``: comparisons built from the agency's own gallery whose answer is known (mated or not).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from facetrail.storage.models import Base, utcnow


class KnownAnswerTest(Base):
    __tablename__ = "known_answer_tests"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    gallery_id: Mapped[int] = mapped_column(ForeignKey("galleries.id", ondelete="CASCADE"), index=True)
    probe_face_id: Mapped[int] = mapped_column(Integer)
    # [{rank, face_id, subject_id, subject_external_id, similarity, fmr, mated}], like a search's candidates
    candidates: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ExaminationTask(Base):
    __tablename__ = "examination_tasks"
    __table_args__ = (UniqueConstraint("search_id", "reviewer_id", name="uq_examination_task_once"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(40), unique=True)
    reviewer_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), index=True)
    search_id: Mapped[int | None] = mapped_column(ForeignKey("searches.id", ondelete="CASCADE"), index=True)
    known_answer_id: Mapped[int | None] = mapped_column(ForeignKey("known_answer_tests.id", ondelete="CASCADE"))
    assigned_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    assigned_by: Mapped[str] = mapped_column(String(200), default="system")
    completed_at: Mapped[dt.datetime | None] = mapped_column()


class ProbeAnalysisRecord(Base):
    __tablename__ = "probe_analyses"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("examination_tasks.id", ondelete="CASCADE"), unique=True)
    quality: Mapped[dict[str, Any]] = mapped_column(JSON)
    suitable: Mapped[bool] = mapped_column(Boolean)
    notes: Mapped[str] = mapped_column(Text, default="")
    recorded_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ExaminedCandidate(Base):
    __tablename__ = "examined_candidates"
    __table_args__ = (
        UniqueConstraint("task_id", "handle", name="uq_examined_candidate_handle"),
        UniqueConstraint("task_id", "face_id", name="uq_examined_candidate_face"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("examination_tasks.id", ondelete="CASCADE"), index=True)
    handle: Mapped[str] = mapped_column(String(40))
    face_id: Mapped[int] = mapped_column(Integer)
    rank: Mapped[int] = mapped_column(Integer)
    position: Mapped[int] = mapped_column(Integer)  # the (shuffled) order the candidates are listed in
    seen_order: Mapped[int | None] = mapped_column(Integer)  # 1 = the first candidate this reviewer opened
    seen_at: Mapped[dt.datetime | None] = mapped_column()
    marks: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    annotations: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    measurements: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    checklist_saved_at: Mapped[dt.datetime | None] = mapped_column()
    conclusion: Mapped[str | None] = mapped_column(String(40))
    reasoning: Mapped[str] = mapped_column(Text, default="")
    limitations: Mapped[str] = mapped_column(Text, default="")
    concluded_at: Mapped[dt.datetime | None] = mapped_column()
