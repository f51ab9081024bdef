"""review, scope and disclosure (issue 8): role grants, review adjudications, verify-subject searches and
salted commitments to candidate lists

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-01 11:00:00

- role_grants: a grant of the reviewer or administrator role waits for a second administrator's approval, or
  (a single administrator) for a delay during which reviewers and auditors see it (accounts/grants.py);
- review_adjudications: how a disagreement of the two panel reviewers was settled (governance/release.py);
- searches.kind ('search' | 'verify_subject'), searches.subject_requested (the subject a 1:1 check named)
  and searches.candidates_salt: the audit record of a search commits to its candidate list with
  SHA-256(salt ‖ list), so the log proves the list without naming anyone (gallery/search.py).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "role_grants",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("role", sa.String(length=40), nullable=False),
        sa.Column("previous_role", sa.String(length=40), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("path", sa.String(length=40), nullable=False),
        sa.Column("requested_by_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="RESTRICT"), nullable=True),
        sa.Column("requested_by", sa.String(length=200), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("effective_after", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_by", sa.String(length=200), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False, server_default=""),
    )
    op.create_index("ix_role_grants_user_id", "role_grants", ["user_id"])
    op.create_index("ix_role_grants_status", "role_grants", ["status"])
    op.create_table(
        "review_adjudications",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("search_id", sa.Integer(), sa.ForeignKey("searches.id", ondelete="CASCADE"), nullable=False),
        sa.Column("face_id", sa.Integer(), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("adjudicator_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="RESTRICT"), nullable=True),
        sa.Column("decision", sa.String(length=40), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("search_id", "face_id", name="uq_adjudication_once"),
    )
    op.create_index("ix_review_adjudications_search_id", "review_adjudications", ["search_id"])
    with op.batch_alter_table("searches") as batch:
        batch.add_column(sa.Column("kind", sa.String(length=20), nullable=False, server_default="search"))
        batch.add_column(sa.Column("subject_requested", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("candidates_salt", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("searches") as batch:
        batch.drop_column("candidates_salt")
        batch.drop_column("subject_requested")
        batch.drop_column("kind")
    op.drop_table("review_adjudications")
    op.drop_table("role_grants")
