"""examination: tasks, probe analyses, examined candidates, known-answer tests (issue 15)

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-01 14:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "known_answer_tests",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("gallery_id", sa.Integer(), sa.ForeignKey("galleries.id", ondelete="CASCADE"), nullable=False),
        sa.Column("probe_face_id", sa.Integer(), nullable=False),
        sa.Column("candidates", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_known_answer_tests_gallery_id", "known_answer_tests", ["gallery_id"])
    op.create_table(
        "examination_tasks",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("public_id", sa.String(length=40), nullable=False, unique=True),
        sa.Column("reviewer_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="RESTRICT"), nullable=False),
        sa.Column("search_id", sa.Integer(), sa.ForeignKey("searches.id", ondelete="CASCADE"), nullable=True),
        sa.Column(
            "known_answer_id",
            sa.Integer(),
            sa.ForeignKey("known_answer_tests.id", ondelete="CASCADE"),
            nullable=True,
        ),
        sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("assigned_by", sa.String(length=200), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("search_id", "reviewer_id", name="uq_examination_task_once"),
    )
    op.create_index("ix_examination_tasks_reviewer_id", "examination_tasks", ["reviewer_id"])
    op.create_index("ix_examination_tasks_search_id", "examination_tasks", ["search_id"])
    op.create_table(
        "probe_analyses",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "task_id",
            sa.Integer(),
            sa.ForeignKey("examination_tasks.id", ondelete="CASCADE"),
            nullable=False,
            unique=True,
        ),
        sa.Column("quality", sa.JSON(), nullable=False),
        sa.Column("suitable", sa.Boolean(), nullable=False),
        sa.Column("notes", sa.Text(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "examined_candidates",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("task_id", sa.Integer(), sa.ForeignKey("examination_tasks.id", ondelete="CASCADE"), nullable=False),
        sa.Column("handle", sa.String(length=40), nullable=False),
        sa.Column("face_id", sa.Integer(), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("seen_order", sa.Integer(), nullable=True),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("marks", sa.JSON(), nullable=False),
        sa.Column("annotations", sa.JSON(), nullable=False),
        sa.Column("measurements", sa.JSON(), nullable=False),
        sa.Column("checklist_saved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("conclusion", sa.String(length=40), nullable=True),
        sa.Column("reasoning", sa.Text(), nullable=False),
        sa.Column("limitations", sa.Text(), nullable=False),
        sa.Column("concluded_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("task_id", "handle", name="uq_examined_candidate_handle"),
        sa.UniqueConstraint("task_id", "face_id", name="uq_examined_candidate_face"),
    )
    op.create_index("ix_examined_candidates_task_id", "examined_candidates", ["task_id"])


def downgrade() -> None:
    op.drop_table("examined_candidates")
    op.drop_table("probe_analyses")
    op.drop_table("examination_tasks")
    op.drop_table("known_answer_tests")
