"""oversight: the agency's case list, anomaly alerts, audit-sample draws and findings, e-mail notifications

Revision ID: 0011
Revises: 0008
Create Date: 2026-12-01 11:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0008"
branch_labels = None
depends_on = None

_SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    # Limits and anomaly rules read one user's searches of a recent window on every search.
    op.create_index("ix_searches_user_id_created_at", "searches", ["user_id", "created_at"])
    op.create_table(
        "oversight_cases",
        sa.Column("case_number", sa.String(length=100), primary_key=True),
        sa.Column("offense", sa.String(length=100), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(length=200), nullable=False),
    )
    op.create_table(
        "oversight_alerts",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("rule", sa.String(length=40), nullable=False),
        sa.Column("dedup_key", sa.String(length=300), nullable=False, unique=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="RESTRICT"), nullable=True),
        sa.Column("unit_id", sa.Integer(), sa.ForeignKey("units.id", ondelete="RESTRICT"), nullable=True),
        sa.Column("figures", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("audit_seq", _SEQ, nullable=False),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("acknowledged_by", sa.String(length=200), nullable=True),
        sa.Column("ack_note", sa.Text(), nullable=False),
    )
    for column in ("rule", "user_id", "unit_id", "created_at"):
        op.create_index(f"ix_oversight_alerts_{column}", "oversight_alerts", [column])
    op.create_table(
        "oversight_sample_draws",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("period", sa.String(length=40), nullable=False, unique=True),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("period_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("seed_seq", _SEQ, nullable=False),
        sa.Column("seed_hash", sa.String(length=64), nullable=False),
        sa.Column("checkpoint_seq", _SEQ, nullable=False),
        sa.Column("share", sa.Float(), nullable=False),
        sa.Column("population", sa.Integer(), nullable=False),
        sa.Column("drawn_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("drawn_by", sa.String(length=200), nullable=False),
    )
    op.create_table(
        "oversight_sample_items",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "draw_id", sa.Integer(), sa.ForeignKey("oversight_sample_draws.id", ondelete="RESTRICT"), nullable=False
        ),
        sa.Column("search_id", sa.Integer(), nullable=False),
        sa.Column("unit_id", sa.Integer(), nullable=True),
        sa.Column("verdict", sa.String(length=20), nullable=True),
        sa.Column("checks", sa.JSON(), nullable=True),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("found_by", sa.String(length=200), nullable=True),
        sa.Column("found_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("draw_id", "search_id", name="uq_sample_item"),
    )
    for column in ("draw_id", "search_id", "unit_id"):
        op.create_index(f"ix_oversight_sample_items_{column}", "oversight_sample_items", [column])
    op.create_table(
        "oversight_notifications",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("ref", sa.String(length=100), nullable=False),
        sa.Column("unit_id", sa.Integer(), nullable=True),
        sa.Column("recipient", sa.String(length=300), nullable=False),
        sa.Column("subject", sa.String(length=300), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
    )
    for column in ("unit_id", "status"):
        op.create_index(f"ix_oversight_notifications_{column}", "oversight_notifications", [column])


def downgrade() -> None:
    op.drop_index("ix_searches_user_id_created_at", table_name="searches")
    op.drop_table("oversight_notifications")
    op.drop_table("oversight_sample_items")
    op.drop_table("oversight_sample_draws")
    op.drop_table("oversight_alerts")
    op.drop_table("oversight_cases")
