"""Content-addressed store of original gallery images: DATA_DIR/images/ab/cd/<sha256>.

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
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

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
