"""retention rules, legal holds and subject dispositions

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "retention_rules",
        sa.Column("gallery_id", sa.Integer(), sa.ForeignKey("galleries.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("rule", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(length=200), nullable=False),
    )
    op.create_table(
        "legal_holds",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("gallery_id", sa.Integer(), sa.ForeignKey("galleries.id", ondelete="RESTRICT"), nullable=True),
        sa.Column("external_id", sa.String(length=200), nullable=True),
        sa.Column("case_number", sa.String(length=100), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("lifted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lifted_by", sa.String(length=200), nullable=True),
        sa.Column("lift_reason", sa.Text(), nullable=True),
    )
    op.create_index("ix_legal_holds_subject", "legal_holds", ["gallery_id", "external_id"])
    op.create_index("ix_legal_holds_case", "legal_holds", ["case_number"])
    op.create_table(
        "subject_dispositions",
        sa.Column("subject_id", sa.Integer(), sa.ForeignKey("subjects.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("disposition", sa.String(length=40), nullable=False),
        sa.Column("set_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("set_by", sa.String(length=200), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("subject_dispositions")
    op.drop_index("ix_legal_holds_case", table_name="legal_holds")
    op.drop_index("ix_legal_holds_subject", table_name="legal_holds")
    op.drop_table("legal_holds")
    op.drop_table("retention_rules")
