"""evidence (issue 15): the enhancement log and the probe declaration

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-01 14:30:00

- image_enhancements: one row per enhancement step an examiner applied to a copy of a probe or candidate image
  in their examination task (operation, normalised parameters, the whole chain from the original, user, time,
  purpose, the parent's and the result's SHA-256); examination/enhanced_images.py;
- searches.probe_declaration and search_approvals.probe_declaration: what the searcher declared the probe to
  be (original | edited | composite_sketch); rows from before this migration were not declared and read
  'original', the only kind FaceTrail searched until then.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "image_enhancements",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("task_id", sa.Integer(), sa.ForeignKey("examination_tasks.id", ondelete="CASCADE"), nullable=False),
        sa.Column("search_id", sa.Integer(), sa.ForeignKey("searches.id", ondelete="CASCADE"), nullable=True),
        sa.Column("image_kind", sa.String(length=16), nullable=False),
        sa.Column("handle", sa.String(length=40), nullable=True),
        sa.Column("photo", sa.Integer(), nullable=False),
        sa.Column("face_id", sa.Integer(), nullable=True),
        sa.Column("original_sha256", sa.String(length=64), nullable=False),
        sa.Column("parent_sha256", sa.String(length=64), nullable=False),
        sa.Column("result_sha256", sa.String(length=64), nullable=False),
        sa.Column("pixels_sha256", sa.String(length=64), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("operation", sa.String(length=20), nullable=False),
        sa.Column("parameters", sa.JSON(), nullable=False),
        sa.Column("steps", sa.JSON(), nullable=False),
        sa.Column("purpose", sa.Text(), nullable=False),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="RESTRICT"), nullable=True),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("image_stored", sa.Boolean(), nullable=False),
    )
    op.create_index("ix_image_enhancements_task_id", "image_enhancements", ["task_id"])
    op.create_index("ix_image_enhancements_search_id", "image_enhancements", ["search_id"])
    op.create_index("ix_image_enhancements_original_sha256", "image_enhancements", ["original_sha256"])
    op.create_index("ix_image_enhancements_result_sha256", "image_enhancements", ["result_sha256"])
    with op.batch_alter_table("searches") as batch:
        batch.add_column(
            sa.Column("probe_declaration", sa.String(length=20), nullable=False, server_default="original")
        )
    with op.batch_alter_table("search_approvals") as batch:
        batch.add_column(
            sa.Column("probe_declaration", sa.String(length=20), nullable=False, server_default="original")
        )


def downgrade() -> None:
    with op.batch_alter_table("search_approvals") as batch:
        batch.drop_column("probe_declaration")
    with op.batch_alter_table("searches") as batch:
        batch.drop_column("probe_declaration")
    op.drop_table("image_enhancements")
