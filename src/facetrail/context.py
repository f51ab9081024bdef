"""The application context: settings, database, face pipeline and vector indexes, opened once.

CLI commands and (later) HTTP routes both get one of these and call the same service functions with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from facetrail.config import Settings, get_settings
from facetrail.storage.db import Database

if TYPE_CHECKING:
    from facetrail.faces.pipeline import FacePipeline


@dataclass
class AppContext:
    settings: Settings
    db: Database
    extras: dict[str, Any] = field(default_factory=dict)  # per-process caches (e.g. loaded indexes)

    @cached_property
    def pipeline(self) -> FacePipeline:
        from facetrail.faces.pipeline import get_pipeline

        return get_pipeline(self.settings)

    @property
    def data_dir(self) -> Path:
        return self.settings.data_dir

    @property
    def audit_key_path(self) -> Path:
        return self.settings.audit_key_path or (self.settings.data_dir / "audit-checkpoint.key")

    @property
    def checkpoints_path(self) -> Path:
        return self.settings.audit.checkpoints_path or (self.settings.data_dir / "audit-checkpoints.jsonl")

    @property
    def signing_key_path(self) -> Path:
        return self.settings.audit.signing_key_path or (self.settings.data_dir / "audit-signing.key")

    @property
    def public_key_path(self) -> Path:
        return self.settings.audit.public_key_path or Path(f"{self.signing_key_path}.pub")

    def close(self) -> None:
        self.db.dispose()


def open_context(settings: Settings | None = None, *, migrate: bool = True) -> AppContext:
    """Open the database (creating/upgrading the schema unless told not to)."""
    s = settings or get_settings()
    s.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database.from_settings(s)
    if migrate:
        from facetrail.storage.migrate import upgrade_database

        upgrade_database(db)
    return AppContext(settings=s, db=db)
