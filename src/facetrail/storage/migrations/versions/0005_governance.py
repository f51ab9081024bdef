"""governance: policy versions, training records, search approvals; the policy version of each search

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "policy_versions",
        sa.Column("version", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "training_records",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="RESTRICT"), nullable=False),
        sa.Column("completed_on", sa.Date(), nullable=False),
        sa.Column("course", sa.String(length=200), nullable=False),
        sa.Column("recorded_by", sa.String(length=200), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "search_approvals",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("requester_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="RESTRICT"), nullable=False),
        sa.Column("unit_id", sa.Integer(), sa.ForeignKey("units.id", ondelete="RESTRICT"), nullable=True),
        sa.Column("gallery_name", sa.String(length=200), nullable=False),
        sa.Column("case_number", sa.String(length=100), nullable=False),
        sa.Column("offense", sa.String(length=100), nullable=False),
        sa.Column("legal_basis", sa.String(length=100), nullable=False),
        sa.Column("justification", sa.Text(), nullable=False),
        sa.Column("candidates", sa.Integer(), nullable=False),
        sa.Column("face_index", sa.Integer(), nullable=True),
        sa.Column("probe_sha256", sa.String(length=64), nullable=False),
        sa.Column("probe_held", sa.Boolean(), nullable=False),
        sa.Column("policy_version", sa.Integer(), nullable=True),
        sa.Column("search_id", sa.Integer(), sa.ForeignKey("searches.id", ondelete="SET NULL"), nullable=True),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deadline", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_by_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="RESTRICT"), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decision_reason", sa.Text(), nullable=False),
    )
    op.create_index("ix_training_records_user_id", "training_records", ["user_id"])
    for column in ("status", "requester_id", "unit_id", "case_number", "search_id"):
        op.create_index(f"ix_search_approvals_{column}", "search_approvals", [column])
    with op.batch_alter_table("searches", schema=None) as batch_op:
        batch_op.add_column(sa.Column("policy_version", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("searches", schema=None) as batch_op:
        batch_op.drop_column("policy_version")
    op.drop_table("search_approvals")
    op.drop_table("training_records")
    op.drop_table("policy_versions")
