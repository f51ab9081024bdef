"""``facetrail store copy --to postgres``: move an installation's images from the local folders into the
PostgreSQL image store, so that hosts share nothing but the database.

Every file is read, its SHA-256 recomputed and compared with its name (a mismatch is reported, not copied),
and written under the same hash; what is already in the database is left as is, so a copy can be rerun or
resumed. The local files stay until the operator removes them (after switching ``cluster.image_store`` to
``postgres`` and checking the result). Audited as 'store.copy' with the counts.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from facetrail.audit.log import append_audit
from facetrail.context import AppContext
from facetrail.gallery.imagestore import STORE_NAMES, DatabaseImageStore, ImageStore, ImageStoreConfigError

ProgressCallback = Callable[[str, int], None]


@dataclass
class StoreCopy:
    copied: dict[str, int] = field(default_factory=dict)
    already: dict[str, int] = field(default_factory=dict)
    mismatched: list[str] = field(default_factory=list)  # files whose content does not hash to their name

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def copy_to_database(ctx: AppContext, *, actor: str, progress: ProgressCallback | None = None) -> StoreCopy:
    if ctx.db.is_sqlite:
        raise ImageStoreConfigError("the PostgreSQL image store needs PostgreSQL as the database (database_url)")
    result = StoreCopy()
    for name in STORE_NAMES:
        local, target = ImageStore(ctx.data_dir / name), DatabaseImageStore(ctx.db, name)
        present = target.stored_hashes()
        result.copied[name] = result.already[name] = 0
        for path in local.iter_files():
            if path.name.startswith(".") or len(path.name) != 64:
                continue  # lock and temporary files
            if path.name in present:
                result.already[name] += 1
                continue
            data = path.read_bytes()
            if hashlib.sha256(data).hexdigest() != path.name:
                result.mismatched.append(f"{name}/{path.name}")
                continue
            target.put(path.name, data)
            result.copied[name] += 1
            if progress is not None:
                progress(name, result.copied[name])
    with ctx.db.transaction() as session:
        append_audit(session, actor=actor, action="store.copy", target="image-store:postgres", details=result.to_dict())
    return result
