"""cluster: pending web probes, searched-face previews, login failures and the gallery change log in the database

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01 11:00:00

Everything a later request depends on moves out of process memory, so any request may land on any process or
host: the probe held between the two steps of a web search, the searched face shown on the results page, and
the per-address login failures. ``gallery_changes`` is the change log each process's index follows: the face
triggers of 0006 now also append one row per face insert, delete or re-embedding, numbered by the gallery's
``faces_version`` after the bump. That bump row-locks the gallery until commit, so within a gallery the
numbers are gapless and commit in order: a reader that sees version V sees every change up to V.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_BUMP = "UPDATE galleries SET faces_version = faces_version + 1 WHERE id = {row}.gallery_id"
_BUMP_BOTH = "UPDATE galleries SET faces_version = faces_version + 1 WHERE id IN (OLD.gallery_id, NEW.gallery_id)"
_LOG = (
    "INSERT INTO gallery_changes (gallery_id, version, face_id, op) "
    "SELECT id, faces_version, {row}.id, '{op}' FROM galleries WHERE id = {row}.gallery_id"
)


def _pg_body() -> str:
    insert = f"{_BUMP.format(row='NEW')}; {_LOG.format(row='NEW', op='add')}"
    delete = f"{_BUMP.format(row='OLD')}; {_LOG.format(row='OLD', op='remove')}"
    # a re-embedding (same gallery) is one 'update'; a move between galleries a remove there and an add here
    update = (
        "IF OLD.gallery_id = NEW.gallery_id THEN "
        f"{_BUMP.format(row='NEW')}; {_LOG.format(row='NEW', op='update')}; "
        f"ELSE {delete}; {insert}; END IF"
    )
    return f"""CREATE OR REPLACE FUNCTION faces_version_bump() RETURNS trigger AS $$
               BEGIN
                 IF TG_OP = 'INSERT' THEN {insert};
                 ELSIF TG_OP = 'DELETE' THEN {delete};
                 ELSE {update};
                 END IF;
                 RETURN NULL;
               END;
               $$ LANGUAGE plpgsql"""


def upgrade() -> None:
    op.create_table(
        "pending_probes",
        sa.Column("token_hash", sa.String(length=64), primary_key=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=True),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("fields", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False, index=True),
    )
    op.create_table(
        "searched_faces",
        sa.Column("search_id", sa.Integer(), sa.ForeignKey("searches.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("jpeg", sa.LargeBinary(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False, index=True),
    )
    op.create_table(
        "login_failures",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("address", sa.String(length=100), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_login_failures_address_at", "login_failures", ["address", "at"])
    op.create_table(
        "gallery_changes",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("gallery_id", sa.Integer(), nullable=False),  # no foreign key: a deleted gallery's log is moot
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("face_id", sa.Integer(), nullable=False),
        sa.Column("op", sa.String(length=10), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.current_timestamp()),
        sa.UniqueConstraint("gallery_id", "version", name="uq_gallery_change_version"),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_pg_body())  # the trigger of 0006 calls this function: replacing it is enough
    else:
        for name in ("insert", "delete", "update"):
            op.execute(f"DROP TRIGGER IF EXISTS faces_version_{name}")
        op.execute(
            "CREATE TRIGGER faces_version_insert AFTER INSERT ON faces BEGIN "
            f"{_BUMP.format(row='NEW')}; {_LOG.format(row='NEW', op='add')}; END"
        )
        op.execute(
            "CREATE TRIGGER faces_version_delete AFTER DELETE ON faces BEGIN "
            f"{_BUMP.format(row='OLD')}; {_LOG.format(row='OLD', op='remove')}; END"
        )
        op.execute(
            "CREATE TRIGGER faces_version_update AFTER UPDATE OF embedding ON faces "
            "WHEN OLD.gallery_id = NEW.gallery_id BEGIN "
            f"{_BUMP.format(row='NEW')}; {_LOG.format(row='NEW', op='update')}; END"
        )
        op.execute(
            "CREATE TRIGGER faces_version_move AFTER UPDATE OF gallery_id ON faces "
            "WHEN OLD.gallery_id != NEW.gallery_id BEGIN "
            f"{_BUMP.format(row='OLD')}; {_LOG.format(row='OLD', op='remove')}; "
            f"{_BUMP.format(row='NEW')}; {_LOG.format(row='NEW', op='add')}; END"
        )
    # the log starts now: a process whose index predates it finds a gap and verifies in full once


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS faces_version_bump ON faces")
        op.execute("DROP FUNCTION IF EXISTS faces_version_bump()")
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
        for name in ("insert", "delete", "update", "move"):
            op.execute(f"DROP TRIGGER IF EXISTS faces_version_{name}")
        op.execute(f"CREATE TRIGGER faces_version_insert AFTER INSERT ON faces BEGIN {_BUMP.format(row='NEW')}; END")
        op.execute(f"CREATE TRIGGER faces_version_delete AFTER DELETE ON faces BEGIN {_BUMP.format(row='OLD')}; END")
        op.execute(
            "CREATE TRIGGER faces_version_update AFTER UPDATE OF gallery_id, embedding ON faces "
            f"BEGIN {_BUMP_BOTH}; END"
        )
    for table in ("gallery_changes", "login_failures", "searched_faces", "pending_probes"):
        op.drop_table(table)
