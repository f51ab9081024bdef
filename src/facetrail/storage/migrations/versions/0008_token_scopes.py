"""api_tokens.scope: what a token may do within its owner's role (read | search | full)

Revision ID: 0008
Revises: 0006
Create Date: 2026-12-01 10:50:00

Existing tokens keep working as before ('full'); new tokens default to the narrower
``auth.default_token_scope``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch:
        batch.add_column(sa.Column("scope", sa.String(20), nullable=False, server_default="full"))


def downgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch:
        batch.drop_column("scope")
