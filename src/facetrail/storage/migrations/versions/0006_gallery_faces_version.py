"""galleries.faces_version: a change counter bumped by triggers on every face insert, delete or re-embedding

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26 06:05:00

The per-search check that a gallery's loaded index still mirrors the database (gallery/index_sync.py) reads
this one value instead of aggregating every face id of the gallery. Triggers, not application code, bump it, so
every writer (enrolment, deletion, retention, a cascade from a deleted subject, a hand-made SQL change) is
seen; the bump commits or rolls back with the change itself.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_BUMP = "UPDATE galleries SET faces_version = faces_version + 1 WHERE id = {row}.gallery_id"
_BUMP_BOTH = "UPDATE galleries SET faces_version = faces_version + 1 WHERE id IN (OLD.gallery_id, NEW.gallery_id)"


def upgrade() -> None:
    op.add_column("galleries", sa.Column("faces_version", sa.BigInteger(), nullable=False, server_default="0"))
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            f"""CREATE FUNCTION faces_version_bump() RETURNS trigger AS $$
               BEGIN
                 IF TG_OP = 'INSERT' THEN {_BUMP.format(row="NEW")};
                 ELSIF TG_OP = 'DELETE' THEN {_BUMP.format(row="OLD")};
                 ELSE {_BUMP_BOTH};
                 END IF;
                 RETURN NULL;
               END;
               $$ LANGUAGE plpgsql"""
        )
        op.execute(
            "CREATE TRIGGER faces_version_bump AFTER INSERT OR DELETE OR UPDATE OF gallery_id, embedding ON faces "
            "FOR EACH ROW EXECUTE FUNCTION faces_version_bump()"
        )
    else:
        op.execute(f"CREATE TRIGGER faces_version_insert AFTER INSERT ON faces BEGIN {_BUMP.format(row='NEW')}; END")
        op.execute(f"CREATE TRIGGER faces_version_delete AFTER DELETE ON faces BEGIN {_BUMP.format(row='OLD')}; END")
        op.execute(
            "CREATE TRIGGER faces_version_update AFTER UPDATE OF gallery_id, embedding ON faces "
            f"BEGIN {_BUMP_BOTH}; END"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS faces_version_bump ON faces")
        op.execute("DROP FUNCTION IF EXISTS faces_version_bump()")
    else:
        for name in ("insert", "delete", "update"):
            op.execute(f"DROP TRIGGER IF EXISTS faces_version_{name}")
    with op.batch_alter_table("galleries") as batch:
        batch.drop_column("faces_version")
