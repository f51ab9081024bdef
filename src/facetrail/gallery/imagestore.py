"""Content-addressed stores of images: original gallery images, kept probes, probes held for approval.

Two backends with one interface (``open_image_store``; ``cluster.image_store`` chooses):

- ``local`` (default): a folder, DATA_DIR/<store>/ab/cd/<sha256> (below);
- ``postgres``: rows of the ``stored_images`` table (migration 0015), so that hosts share nothing but the
  database. Deleted rows are purged from the table's pages by the same VACUUM FULL as the face tables
  (retention/deletion.py), so verifiable deletion holds on both. Locks are PostgreSQL advisory locks.

The local folder:

Files are written atomically (temporary file in the same folder, fsync, rename), so a crash never leaves a
half-written image under its final name. The database is the system of record: an image file is written
*before* the face row that refers to it is committed, so a committed row never points at a missing file,
and a crash can only leave unreferenced files behind. ``sweep_orphans`` removes those.

Writers (enrollment runs) hold a shared lock on the store for their whole run; sweeping and deleting take
the exclusive lock without waiting, so they never remove a file that a running enrollment is about to
commit. If the exclusive lock is busy the work is left for the next sweep, which is always safe.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select, text
from sqlalchemy.exc import IntegrityError

from facetrail.errors import BadInputError
from facetrail.storage.cluster_models import StoredImage

if TYPE_CHECKING:
    from facetrail.context import AppContext
    from facetrail.storage.db import Database

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_TMP_PREFIX = ".tmp-"


class ImageStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    @classmethod
    def for_data_dir(cls, data_dir: Path) -> ImageStore:
        return cls(data_dir / "images")

    def path_for(self, sha256: str) -> Path:
        if not _SHA256.match(sha256):
            raise ValueError(f"not a lowercase hex SHA-256: {sha256!r}")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def exists(self, sha256: str) -> bool:
        return self.path_for(sha256).is_file()

    def get(self, sha256: str) -> bytes | None:
        try:
            return self.path_for(sha256).read_bytes()
        except FileNotFoundError:
            return None

    def put(self, sha256: str, data: bytes) -> Path:
        """Store ``data`` under its hash (the caller's hash is trusted: it was computed from these bytes)."""
        final = self.path_for(sha256)
        if final.is_file():
            return final
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=_TMP_PREFIX, dir=final.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp_name, final)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp_name)
            raise
        return final

    def remove(self, sha256: str) -> bool:
        try:
            self.path_for(sha256).unlink()
        except FileNotFoundError:
            return False
        return True

    def iter_files(self) -> Iterator[Path]:
        """Every file in the store's two-level layout, including leftover temporary files."""
        if not self.root.is_dir():
            return
        for first in sorted(self.root.iterdir()):
            if not first.is_dir():
                continue
            for second in sorted(first.iterdir()):
                if second.is_dir():
                    yield from sorted(p for p in second.iterdir() if p.is_file())

    def stored_hashes(self) -> set[str]:
        return {p.name for p in self.iter_files() if _SHA256.match(p.name)}

    @contextlib.contextmanager
    def shared_lock(self) -> Iterator[None]:
        """Held by an enrollment run while it writes files it has not yet committed."""
        with self._lock_file() as fd:
            fcntl.flock(fd, fcntl.LOCK_SH)
            yield

    @contextlib.contextmanager
    def exclusive_lock_if_free(self) -> Iterator[bool]:
        """Yields True with the exclusive lock held, or False at once if an enrollment is running."""
        with self._lock_file() as fd:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            yield True

    @contextlib.contextmanager
    def _lock_file(self) -> Iterator[int]:
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            yield fd
        finally:
            os.close(fd)  # closing releases the flock

    def remove_unreferenced(self, candidates: Iterable[str], referenced: set[str]) -> int:
        """Remove the candidate files not in ``referenced``; the caller holds the exclusive lock."""
        removed = 0
        for sha in candidates:
            if sha not in referenced and self.remove(sha):
                removed += 1
        return removed

    def sweep(self, referenced: set[str]) -> int:
        """Remove every stored file (and temporary leftover) not in ``referenced``; caller holds the lock."""
        removed = 0
        for path in list(self.iter_files()):
            if path.name.startswith(_TMP_PREFIX) or path.name not in referenced:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                    removed += 1
        return removed


class ImageStoreConfigError(BadInputError):
    code = "image_store_needs_postgres"


STORE_NAMES = ("images", "probes", "probes-pending", "enhanced")
_DELETE_CHUNK = 500


class DatabaseImageStore:
    """The same interface as ``ImageStore``, on the ``stored_images`` table (PostgreSQL)."""

    def __init__(self, db: Database, name: str) -> None:
        if name not in STORE_NAMES:
            raise ValueError(f"unknown image store {name!r}")
        self.db, self.name = db, name
        # advisory lock key: stable per store (the same on every host)
        self._lock_key = int.from_bytes(hashlib.sha256(f"facetrail-store:{name}".encode()).digest()[:4], "big")

    def spec(self) -> tuple[str, str, str]:
        return ("postgres", self.db.url, self.name)

    def exists(self, sha256: str) -> bool:
        _check(sha256)
        with self.db.read() as s:
            return s.get(StoredImage, (self.name, sha256)) is not None

    def get(self, sha256: str) -> bytes | None:
        _check(sha256)
        with self.db.read() as s:
            row = s.get(StoredImage, (self.name, sha256))
            return None if row is None else bytes(row.data)

    def put(self, sha256: str, data: bytes) -> None:
        _check(sha256)
        if self.exists(sha256):
            return
        with contextlib.suppress(IntegrityError), self.db.transaction() as s:  # stored by another writer meanwhile
            s.add(StoredImage(store=self.name, sha256=sha256, data=data))

    def remove(self, sha256: str) -> bool:
        _check(sha256)
        with self.db.transaction() as s:
            result: Any = s.execute(
                delete(StoredImage).where(StoredImage.store == self.name, StoredImage.sha256 == sha256)
            )
            return bool(result.rowcount)

    def stored_hashes(self) -> set[str]:
        with self.db.read() as s:
            return set(s.execute(select(StoredImage.sha256).where(StoredImage.store == self.name)).scalars())

    @contextlib.contextmanager
    def shared_lock(self) -> Iterator[None]:
        with self.db.engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock_shared(:k)"), {"k": self._lock_key})
            conn.commit()
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock_shared(:k)"), {"k": self._lock_key})
                conn.commit()

    @contextlib.contextmanager
    def exclusive_lock_if_free(self) -> Iterator[bool]:
        with self.db.engine.connect() as conn:
            locked = bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": self._lock_key}).scalar())
            conn.commit()
            try:
                yield locked
            finally:
                if locked:
                    conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self._lock_key})
                    conn.commit()

    def remove_unreferenced(self, candidates: Iterable[str], referenced: set[str]) -> int:
        return self._remove([sha for sha in candidates if sha not in referenced])

    def sweep(self, referenced: set[str]) -> int:
        return self._remove(sorted(self.stored_hashes() - referenced))

    def _remove(self, hashes: list[str]) -> int:
        removed = 0
        for start in range(0, len(hashes), _DELETE_CHUNK):
            with self.db.transaction() as s:
                result: Any = s.execute(
                    delete(StoredImage).where(
                        StoredImage.store == self.name, StoredImage.sha256.in_(hashes[start : start + _DELETE_CHUNK])
                    )
                )
                removed += int(result.rowcount or 0)
        return removed


AnyImageStore = ImageStore | DatabaseImageStore


def _check(sha256: str) -> None:
    if not _SHA256.match(sha256):
        raise ValueError(f"not a lowercase hex SHA-256: {sha256!r}")


def open_image_store(ctx: AppContext, name: str) -> AnyImageStore:
    """The configured backend of store ``name`` (images | probes | probes-pending | enhanced)."""
    if ctx.settings.cluster.image_store == "postgres":
        if ctx.db.is_sqlite:
            raise ImageStoreConfigError(
                "cluster.image_store = 'postgres' needs PostgreSQL as the database (database_url)",
                field="cluster.image_store",
            )
        return DatabaseImageStore(ctx.db, name)
    return ImageStore(ctx.data_dir / name)


def store_spec(store: AnyImageStore | None) -> tuple[str, str, str] | None:
    """A picklable description, for enrolment worker processes to open the same store."""
    if store is None:
        return None
    if isinstance(store, DatabaseImageStore):
        return store.spec()
    return ("local", str(store.root), "")


def store_from_spec(spec: tuple[str, str, str] | None) -> AnyImageStore | None:
    if spec is None:
        return None
    kind, where, name = spec
    if kind == "postgres":
        from facetrail.storage.db import Database

        return DatabaseImageStore(Database(where), name)
    return ImageStore(Path(where))
