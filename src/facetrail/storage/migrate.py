"""Create or upgrade the schema with Alembic (``facetrail init`` calls this)."""

from __future__ import annotations

from importlib import resources

from alembic import command
from alembic.config import Config

from facetrail.storage.db import Database


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(resources.files("facetrail.storage") / "migrations"))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade_database(db: Database) -> None:
    cfg = alembic_config(db.url)
    with db.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
