"""Each gallery's vector index, kept in step with the database, which is the system of record.

The index is a derived copy of the gallery's (face id, embedding) rows, persisted under DATA_DIR/index as
``gallery-<id>.<kind>.faiss`` plus a small JSON (count, checksum, model id, kind). Guarantees:

- Loaded once per process (kept in ``ctx.extras``) and, at load, compared with the database: same count and
  same order-independent checksum of (face id, embedding bytes). A mismatch is logged, audited
  ('index.repair'), returned to the caller and repaired from the database; it is never ignored.
- Before every search the gallery's database fingerprint (its ``faces_version`` change counter, bumped by
  triggers on every face insert, delete or re-embedding) is compared with the version the index mirrors; if
  another process or host changed the gallery meanwhile, only the changes since then are applied, read from
  the gallery change log (``gallery_changes``, appended by the same triggers in the same transaction): O(changes),
  not O(gallery). A gap in the log (trimmed by retention, or a restored database) falls back to the full
  verify-and-repair.
- A process starts from the persisted snapshot (the file records the version it mirrors) plus the log tail;
  a file without a version, unreadable or inconsistent with its description is verified and repaired in full.
- The full verify-and-repair stays available on demand (``facetrail index check``).
- ``add_faces`` / ``remove_faces`` apply committed enrolments and deletions to the loaded index and save it.
  If a process dies between its database commit and the index save, the next load repairs the file.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from facetrail.audit.log import append_audit
from facetrail.context import AppContext
from facetrail.errors import FaceTrailError
from facetrail.index import ApproximateIndex, ExactIndex, load_index, make_index, vector_set_checksum
from facetrail.index.base import atomic_write
from facetrail.storage.cluster_models import GalleryChange
from facetrail.storage.models import Face, Gallery, utcnow

log = logging.getLogger(__name__)

SYSTEM_ACTOR = "system:index-sync"
META_FORMAT = 1
# Writing the whole index after every enrolment batch is cheap for small galleries and wasteful for huge ones;
# above this size saves are spaced out (a stale file is repaired from the database at the next load anyway).
EAGER_SAVE_MAX_VECTORS = 200_000
LAZY_SAVE_INTERVAL_S = 30.0

AnyIndex = ExactIndex | ApproximateIndex
Fingerprint = tuple[int, str]  # (galleries.faces_version, created_at)
ProgressCallback = Callable[[int, int], None]


class IndexSyncError(FaceTrailError):
    code = "index_sync_error"


@dataclass
class IndexCheck:
    """What comparing a gallery's index with the database found, and what was done about it."""

    gallery_id: int
    kind: str
    model_id: str
    db_count: int
    index_count: int | None  # None: there was no usable index file
    db_checksum: str
    index_checksum: str | None
    problems: list[str] = field(default_factory=list)
    repaired: bool = False

    @property
    def consistent(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "gallery_id": self.gallery_id,
            "kind": self.kind,
            "model_id": self.model_id,
            "consistent": self.consistent,
            "db_count": self.db_count,
            "index_count": self.index_count,
            "db_checksum": self.db_checksum,
            "index_checksum": self.index_checksum,
            "problems": list(self.problems),
            "repaired": self.repaired,
        }


@dataclass
class GalleryIndex:
    """A gallery's loaded index. ``index`` is None only while the gallery has no faces (dimension unknown)."""

    gallery_id: int
    model_id: str
    kind: str
    index: AnyIndex | None
    fingerprint: Fingerprint | None = None  # the database state the index was last verified against
    dirty: bool = False
    last_saved: float = 0.0
    lock: threading.RLock = field(default_factory=threading.RLock)

    @property
    def count(self) -> int:
        return 0 if self.index is None else self.index.ntotal

    def search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, face ids) of the k most similar faces, best first."""
        if self.index is None or self.index.ntotal == 0:
            return np.zeros(0, np.float32), np.zeros(0, np.int64)
        scores, ids = self.index.search(np.asarray(query, np.float32).reshape(1, -1), k)
        keep = ids[0] >= 0
        return scores[0][keep], ids[0][keep]


# paths and database reads --------------------------------------------------------------------------------


def index_dir(ctx: AppContext) -> Path:
    return ctx.data_dir / "index"


def index_paths(ctx: AppContext, gallery_id: int, kind: str) -> tuple[Path, Path]:
    base = index_dir(ctx) / f"gallery-{gallery_id}.{kind}"
    return base.with_name(base.name + ".faiss"), base.with_name(base.name + ".json")


def read_db_vectors(session: Session, gallery_id: int) -> tuple[np.ndarray, np.ndarray]:
    """All (face id, embedding) rows of a gallery, ascending by id; embeddings as an (n, dim) float32 array."""
    rows = session.execute(select(Face.id, Face.embedding).where(Face.gallery_id == gallery_id).order_by(Face.id)).all()
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    if not rows:
        return ids, np.zeros((0, 0), np.float32)
    sizes = {len(r[1]) for r in rows}
    if len(sizes) != 1:
        raise IndexSyncError(f"gallery {gallery_id} holds embeddings of different sizes {sorted(sizes)}")
    vectors = np.frombuffer(b"".join(r[1] for r in rows), dtype="<f4").reshape(len(rows), -1)
    return ids, vectors.astype(np.float32, copy=False)


def db_fingerprint(session: Session, gallery_id: int) -> Fingerprint:
    """Cheap summary that changes whenever faces are added to, deleted from or re-embedded in the gallery.

    ``faces_version`` is bumped by database triggers in the same transaction as every such change (migration
    0006), whoever makes it; one primary-key lookup instead of a pass over the gallery's face ids. The creation
    time tells apart a new gallery that was given the id of a deleted one (SQLite may reuse it).
    """
    row = session.execute(
        select(Gallery.faces_version, Gallery.created_at).where(Gallery.id == gallery_id)
    ).one_or_none()
    return (-1, "") if row is None else (int(row[0]), str(row[1]))


def _gallery(session: Session, gallery_id: int) -> Gallery:
    gallery = session.get(Gallery, gallery_id)
    if gallery is None:
        raise IndexSyncError(f"gallery {gallery_id} does not exist")
    return gallery


def _stored_ids(index: AnyIndex) -> np.ndarray:
    store = index.exact if isinstance(index, ApproximateIndex) else index
    return np.array(store.stored()[0], dtype=np.int64)  # a copy: the view dies with the next change


def _empty_checksum() -> str:
    return vector_set_checksum(np.zeros(0, np.int64), np.zeros((0, 0), np.float32))


def _index_checksum(index: AnyIndex | None) -> str:
    return _empty_checksum() if index is None or index.ntotal == 0 else index.checksum()


def _db_checksum(ids: np.ndarray, vectors: np.ndarray) -> str:
    return _empty_checksum() if len(ids) == 0 else vector_set_checksum(ids, vectors)


# building, loading, saving --------------------------------------------------------------------------------


def _index_params(ctx: AppContext) -> dict[str, Any]:
    return dict(ctx.settings.index.params)


def build_index(
    kind: str,
    ids: np.ndarray,
    vectors: np.ndarray,
    params: dict[str, Any],
    progress: ProgressCallback | None = None,
    chunk: int = 50_000,
) -> AnyIndex | None:
    if len(ids) == 0:
        return None
    index = make_index(kind, int(vectors.shape[1]), **params)
    for start in range(0, len(ids), chunk):
        index.add(ids[start : start + chunk], vectors[start : start + chunk])
        if progress is not None:
            progress(min(start + chunk, len(ids)), len(ids))
    return index


def save_gallery_index(ctx: AppContext, gi: GalleryIndex) -> None:
    """Write the index file, then its JSON (a crash between the two is caught by the checksum at load)."""
    index_path, meta_path = index_paths(ctx, gi.gallery_id, gi.kind)
    index_path.parent.mkdir(parents=True, exist_ok=True)
    with gi.lock, _file_lock(index_path):
        if gi.index is None:
            index_path.unlink(missing_ok=True)
        else:
            gi.index.save(index_path)
        meta = {
            "format": META_FORMAT,
            "gallery_id": gi.gallery_id,
            "kind": gi.kind,
            "model_id": gi.model_id,
            "dim": None if gi.index is None else gi.index.dim,
            "count": gi.count,
            "checksum": _index_checksum(gi.index),
            # the database state the file mirrors at least (it may hold later changes too: catching up from
            # here is idempotent); None: never verified, the next load verifies in full
            "faces_version": None if gi.fingerprint is None else gi.fingerprint[0],
            "gallery_created_at": None if gi.fingerprint is None else gi.fingerprint[1],
            "saved_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        encoded = json.dumps(meta, indent=2, sort_keys=True).encode()

        def write_meta(fh: BinaryIO) -> None:
            fh.write(encoded)

        atomic_write(meta_path, write_meta)
        gi.dirty, gi.last_saved = False, time.monotonic()


@contextlib.contextmanager
def _file_lock(index_path: Path) -> Iterator[None]:
    """Processes sharing a data folder write and read an index file and its JSON as a pair, one at a time."""
    fd = os.open(index_path.with_name(index_path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _load_file(
    ctx: AppContext, gallery_id: int, kind: str, model_id: str
) -> tuple[AnyIndex | None, list[str], str | None, Fingerprint | None]:
    """The persisted index, the problems found reading it (none: the file is whole and as described), and its
    checksum when computed (so the comparison with the database need not compute it again)."""
    index_path, meta_path = index_paths(ctx, gallery_id, kind)
    if not meta_path.exists():
        return None, ["no index file"], None, None
    try:
        index_path.parent.mkdir(parents=True, exist_ok=True)
        with _file_lock(index_path):
            meta = json.loads(meta_path.read_text())
            index = load_index(index_path) if index_path.exists() else None
    except (OSError, ValueError, RuntimeError) as exc:  # faiss raises RuntimeError on corrupt data
        return None, [f"index file unreadable: {exc}"], None, None
    problems = []
    if meta.get("model_id") != model_id:
        problems.append(f"index was built with model {meta.get('model_id')}, the gallery uses {model_id}")
    if meta.get("kind") != kind or (index is not None and index.kind != kind):
        problems.append(f"index kind {meta.get('kind')} differs from the configured {kind}")
    count = 0 if index is None else index.ntotal
    checksum = None
    if meta.get("count") != count:
        problems.append(f"index file holds {count} vectors, its description says {meta.get('count')}")
    elif meta.get("checksum") != (checksum := _index_checksum(index)):
        problems.append("index file content does not match its recorded checksum")
    version, created = meta.get("faces_version"), meta.get("gallery_created_at")
    fingerprint = (int(version), str(created)) if isinstance(version, int) and isinstance(created, str) else None
    return index, problems, checksum, fingerprint


def _compare(
    index: AnyIndex | None, db_ids: np.ndarray, db_vectors: np.ndarray, index_sum: str | None = None
) -> tuple[str, str, list[str]]:
    db_sum = _db_checksum(db_ids, db_vectors)
    index_sum = index_sum or _index_checksum(index)
    count = 0 if index is None else index.ntotal
    problems = []
    if count != len(db_ids):
        problems.append(f"index holds {count} faces, the database {len(db_ids)}")
    if index_sum != db_sum:
        problems.append("index checksum differs from the database's (face ids or embeddings differ)")
    return db_sum, index_sum, problems


def _repair(gi: GalleryIndex, db_ids: np.ndarray, db_vectors: np.ndarray, params: dict[str, Any]) -> None:
    """Bring the index to exactly the database's rows: apply the id difference, rebuild if that is not enough."""
    index = gi.index
    if index is not None and index.kind == gi.kind and (len(db_ids) == 0 or index.dim == db_vectors.shape[1]):
        present = _stored_ids(index)
        extra = np.setdiff1d(present, db_ids)
        missing = np.isin(db_ids, present, invert=True)
        if len(extra):
            index.remove(extra)
        if missing.any():
            index.add(db_ids[missing], db_vectors[missing])
        if _index_checksum(index) == _db_checksum(db_ids, db_vectors):
            return
    gi.index = build_index(gi.kind, db_ids, db_vectors, params)


def _audit_repair(ctx: AppContext, check: IndexCheck, actor: str) -> None:
    try:
        with ctx.db.transaction() as session:
            append_audit(
                session,
                actor=actor,
                action="index.repair",
                target=f"gallery:{check.gallery_id}",
                details=check.to_dict(),
            )
    except Exception:  # the repair itself stands: the index now mirrors the database
        log.exception("could not audit the repair of gallery %s's index", check.gallery_id)


def _verify_and_repair(
    ctx: AppContext,
    gi: GalleryIndex,
    file_problems: Sequence[str],
    repair: bool,
    actor: str,
    index_checksum: str | None = None,  # of gi.index, if already known
) -> IndexCheck:
    with ctx.db.read() as session:
        fingerprint = db_fingerprint(session, gi.gallery_id)
        db_ids, db_vectors = read_db_vectors(session, gi.gallery_id)
    db_sum, index_sum, problems = _compare(gi.index, db_ids, db_vectors, index_checksum)
    if file_problems == ["no index file"] and not problems:
        file_problems = []  # an empty gallery needs no file
    check = IndexCheck(
        gi.gallery_id,
        gi.kind,
        gi.model_id,
        len(db_ids),
        None if gi.index is None else gi.count,
        db_sum,
        index_sum,
        [*file_problems, *problems],
    )
    if check.consistent:
        if repair and gi.fingerprint != fingerprint:  # the snapshot records the version it was verified at
            gi.fingerprint = fingerprint
            save_gallery_index(ctx, gi)
        gi.fingerprint = fingerprint
        return check
    log.warning("index of gallery %s does not match the database: %s", gi.gallery_id, "; ".join(check.problems))
    if repair:
        _repair(gi, db_ids, db_vectors, _index_params(ctx))
        if _index_checksum(gi.index) != db_sum:  # pragma: no cover - a rebuild from the rows always matches
            raise IndexSyncError(f"index of gallery {gi.gallery_id} could not be repaired")
        gi.fingerprint = fingerprint
        save_gallery_index(ctx, gi)
        check.repaired = True
        _audit_repair(ctx, check, actor)
    return check


# the per-process cache ------------------------------------------------------------------------------------

_CACHE_LOCK = threading.RLock()


def _cache(ctx: AppContext) -> dict[int, GalleryIndex]:
    with _CACHE_LOCK:
        cache: dict[int, GalleryIndex] = ctx.extras.setdefault("gallery_indexes", {})
        return cache


def _load_unverified(ctx: AppContext, gallery_id: int) -> tuple[GalleryIndex, list[str], str | None]:
    """The persisted snapshot as it is; its fingerprint is the version its file records (None if unusable)."""
    with ctx.db.read() as session:
        model_id = _gallery(session, gallery_id).model_id
    kind = ctx.settings.index.kind
    index, file_problems, checksum, fingerprint = _load_file(ctx, gallery_id, kind, model_id)
    gi = GalleryIndex(gallery_id, model_id, kind, index, None if file_problems else fingerprint)
    return gi, file_problems, checksum


CATCH_UP_CHUNK = 5_000


def catch_up(ctx: AppContext, gi: GalleryIndex) -> bool:
    """Apply the gallery's logged changes after the version the index mirrors (caller holds ``gi.lock``).

    O(changes): the touched faces are removed from the index and those that still exist are added back with
    their current embedding, so applying a change twice, or a change the index already holds, is harmless.
    False when the log cannot bring the index up to date (no known version, a different gallery under the same
    id, a gap, or a database older than the index): the caller then verifies in full.
    """
    if gi.fingerprint is None:
        return False
    start_version, created = gi.fingerprint
    with ctx.db.read() as session:
        current = db_fingerprint(session, gi.gallery_id)
        if current == gi.fingerprint:
            return True
        if current[1] != created or current[0] < start_version:
            return False
        # every change up to ``current`` committed with its version bump, so all of them are visible here
        rows = session.execute(
            select(GalleryChange.version, GalleryChange.face_id, GalleryChange.op)
            .where(GalleryChange.gallery_id == gi.gallery_id, GalleryChange.version > start_version)
            .order_by(GalleryChange.version)
        ).all()
        versions = [int(r[0]) for r in rows]
        if not versions or versions != list(range(start_version + 1, start_version + 1 + len(versions))):
            return False  # trimmed or missing entries: only a full comparison can tell what changed
        touched = np.unique(np.fromiter((r[1] for r in rows), dtype=np.int64, count=len(rows)))
        found_ids: list[int] = []
        found_vectors: list[bytes] = []
        for begin in range(0, len(touched), CATCH_UP_CHUNK):
            chunk = [int(i) for i in touched[begin : begin + CATCH_UP_CHUNK]]
            for face_id, embedding in session.execute(
                select(Face.id, Face.embedding).where(Face.gallery_id == gi.gallery_id, Face.id.in_(chunk))
            ):
                found_ids.append(int(face_id))
                found_vectors.append(bytes(embedding))
    if gi.index is not None and gi.index.ntotal:
        gi.index.remove(touched)
    if found_ids:
        sizes = {len(v) for v in found_vectors}
        if len(sizes) != 1 or (gi.index is not None and gi.index.dim * 4 not in sizes):
            return False
        vectors = np.frombuffer(b"".join(found_vectors), dtype="<f4").reshape(len(found_ids), -1).astype(np.float32)
        if gi.index is None:
            gi.index = make_index(gi.kind, int(vectors.shape[1]), **_index_params(ctx))
        gi.index.add(np.asarray(found_ids, dtype=np.int64), vectors)
    gi.fingerprint = (versions[-1], created)
    gi.dirty = True
    removed = any(r[2] != "add" for r in rows)
    if removed or time.monotonic() - gi.last_saved >= LAZY_SAVE_INTERVAL_S:
        # a deleted or re-embedded face's old vector must not stay in this host's snapshot (verifiable
        # deletion holds on every host); additions only shorten the log a later start replays
        save_gallery_index(ctx, gi)
    return True


def _bring_up_to_date(
    ctx: AppContext, gi: GalleryIndex, file_problems: list[str], checksum: str | None, actor: str
) -> None:
    if file_problems or not catch_up(ctx, gi):
        _verify_and_repair(ctx, gi, file_problems, repair=True, actor=actor, index_checksum=checksum)


def get_gallery_index(ctx: AppContext, gallery_id: int, *, actor: str = SYSTEM_ACTOR) -> GalleryIndex:
    """The gallery's index, up to date with the database: loaded from its snapshot plus the change log on first
    use, then brought forward by the changes logged since (a full verify-and-repair where the log cannot)."""
    cache = _cache(ctx)
    gi = cache.get(gallery_id)
    if gi is None:
        with _CACHE_LOCK:
            gi = cache.get(gallery_id)
            if gi is None:
                gi, file_problems, checksum = _load_unverified(ctx, gallery_id)
                with gi.lock:
                    _bring_up_to_date(ctx, gi, file_problems, checksum, actor)
                cache[gallery_id] = gi
        return gi
    with gi.lock:
        with ctx.db.read() as session:
            current = db_fingerprint(session, gallery_id)
        if current != gi.fingerprint:
            _bring_up_to_date(ctx, gi, [], None, actor)
    return gi


def is_current(ctx: AppContext, gallery_id: int) -> bool:
    """Whether this process has the gallery's index loaded and mirroring the database's latest version."""
    gi = _cache(ctx).get(gallery_id)
    if gi is None:
        return False
    with ctx.db.read() as session:
        return db_fingerprint(session, gallery_id) == gi.fingerprint


def load_all_indexes(ctx: AppContext, *, actor: str = SYSTEM_ACTOR) -> int:
    """Load (and bring up to date) every gallery's index; returns how many. A server calls it at start."""
    with ctx.db.read() as session:
        gallery_ids = list(session.execute(select(Gallery.id).order_by(Gallery.id)).scalars())
    for gallery_id in gallery_ids:
        with contextlib.suppress(IndexSyncError):  # deleted meanwhile
            get_gallery_index(ctx, gallery_id, actor=actor)
    return len(gallery_ids)


def trim_change_log(ctx: AppContext) -> int:
    """Delete change-log entries older than ``cluster.change_log_days`` and those of deleted galleries. A
    process whose index is older than what remains verifies in full once (it finds a gap)."""
    cutoff = utcnow() - dt.timedelta(days=ctx.settings.cluster.change_log_days)
    with ctx.db.transaction() as session:
        old: Any = session.execute(delete(GalleryChange).where(GalleryChange.at < cutoff))
        orphaned: Any = session.execute(
            delete(GalleryChange).where(GalleryChange.gallery_id.not_in(select(Gallery.id)))
        )
    return int(old.rowcount or 0) + int(orphaned.rowcount or 0)


def _index_for_update(ctx: AppContext, gallery_id: int) -> GalleryIndex:
    """The loaded index, or the saved file as it is: enrolment only applies its own committed changes (no full
    comparison with the database per batch); the next search brings it up to date (from the change log)."""
    cache = _cache(ctx)
    with _CACHE_LOCK:
        gi = cache.get(gallery_id)
        if gi is None:
            gi, file_problems, _ = _load_unverified(ctx, gallery_id)
            if file_problems and file_problems != ["no index file"]:
                log.warning("index file of gallery %s set aside: %s", gallery_id, "; ".join(file_problems))
                gi.index = None  # rebuilt from the database at the next verification
            cache[gallery_id] = gi
    return gi


def forget_gallery_index(ctx: AppContext, gallery_id: int) -> None:
    """Drop the loaded copy (e.g. after the gallery is deleted); the next use loads and checks the file."""
    _cache(ctx).pop(gallery_id, None)


def _maybe_save(ctx: AppContext, gi: GalleryIndex) -> None:
    if gi.count <= EAGER_SAVE_MAX_VECTORS or time.monotonic() - gi.last_saved >= LAZY_SAVE_INTERVAL_S:
        save_gallery_index(ctx, gi)


def flush_indexes(ctx: AppContext) -> None:
    """Save every loaded index with unsaved changes (call at the end of a long enrolment)."""
    for gi in list(_cache(ctx).values()):
        with gi.lock:
            if gi.dirty:
                save_gallery_index(ctx, gi)


# the functions enrolment and deletion call -----------------------------------------------------------------


def add_faces(ctx: AppContext, gallery_id: int, face_ids: Iterable[int], vectors: np.ndarray) -> int:
    """Add faces whose rows are already committed. Ids the index already holds are skipped (loading the index
    reads committed rows too). Returns how many vectors were added."""
    ids = np.asarray(list(face_ids), dtype=np.int64)
    array = np.asarray(vectors, dtype=np.float32)
    if len(ids) == 0:
        return 0
    array = array.reshape(len(ids), -1)
    gi = _index_for_update(ctx, gallery_id)
    with gi.lock:
        if gi.index is None:
            gi.index = make_index(gi.kind, int(array.shape[1]), **_index_params(ctx))
        new = np.isin(ids, _stored_ids(gi.index), invert=True)
        if new.any():
            gi.index.add(ids[new], array[new])
            gi.dirty = True
            _maybe_save(ctx, gi)
        return int(new.sum())


def remove_faces(ctx: AppContext, gallery_id: int, face_ids: Iterable[int]) -> int:
    """Remove these faces' vectors (call after their rows were deleted). Returns how many were removed."""
    ids = np.asarray(list(face_ids), dtype=np.int64)
    if len(ids) == 0:
        return 0
    gi = _index_for_update(ctx, gallery_id)
    with gi.lock:
        if gi.index is None:
            return 0
        removed = gi.index.remove(ids)
        if removed:
            gi.dirty = True
            _maybe_save(ctx, gi)
        return removed


# check and rebuild (``facetrail index check`` / ``rebuild``) -----------------------------------------------


def check_index(ctx: AppContext, gallery_id: int, *, repair: bool = True, actor: str = SYSTEM_ACTOR) -> IndexCheck:
    """Load the persisted snapshot afresh, apply the change log's tail as a starting process would, and compare
    the result with the database in full (count and checksum of every face id and embedding); repair a
    mismatch unless told not to. A snapshot brought forward is saved (when repairing)."""
    gi, file_problems, checksum = _load_unverified(ctx, gallery_id)
    with gi.lock:
        if not file_problems and catch_up(ctx, gi):
            checksum = None  # the index changed since the file was read
        check = _verify_and_repair(ctx, gi, file_problems, repair, actor, checksum)
        if repair and gi.dirty:
            save_gallery_index(ctx, gi)
    if repair:
        _cache(ctx)[gallery_id] = gi
    return check


def rebuild_index(
    ctx: AppContext, gallery_id: int, *, actor: str, progress: ProgressCallback | None = None
) -> IndexCheck:
    """Rebuild the gallery's index from the database and save it; audited ('index.rebuild') with the save."""
    with ctx.db.read() as session:
        model_id = _gallery(session, gallery_id).model_id
        fingerprint = db_fingerprint(session, gallery_id)
        db_ids, db_vectors = read_db_vectors(session, gallery_id)
    kind = ctx.settings.index.kind
    if progress is not None:
        progress(0, len(db_ids))
    gi = GalleryIndex(
        gallery_id, model_id, kind, build_index(kind, db_ids, db_vectors, _index_params(ctx), progress), fingerprint
    )
    db_sum = _db_checksum(db_ids, db_vectors)
    check = IndexCheck(gallery_id, kind, model_id, len(db_ids), gi.count, db_sum, _index_checksum(gi.index))
    if check.index_checksum != db_sum:  # pragma: no cover - a rebuild from the rows always matches
        raise IndexSyncError(f"rebuilt index of gallery {gallery_id} does not match the database")
    with ctx.db.transaction() as session:
        append_audit(
            session,
            actor=actor,
            action="index.rebuild",
            target=f"gallery:{gallery_id}",
            details={
                "gallery_id": gallery_id,
                "kind": kind,
                "model_id": model_id,
                "count": len(db_ids),
                "checksum": db_sum,
            },
        )
        save_gallery_index(ctx, gi)  # inside the transaction: if the save fails, the audit record rolls back
    _cache(ctx)[gallery_id] = gi
    return check


_INDEX_FILE = re.compile(r"^gallery-(\d+)\.([a-z]+)\.(faiss|json)$")


def stale_index_files(ctx: AppContext) -> list[Path]:
    """Index files no longer kept in step: of a gallery that no longer exists, or of another index kind than
    the configured one (left by a configuration change). They may hold vectors of since-deleted faces."""
    folder = index_dir(ctx)
    if not folder.is_dir():
        return []
    with ctx.db.read() as session:
        gallery_ids = set(session.execute(select(Gallery.id)).scalars())
    kind = ctx.settings.index.kind
    stale = []
    for path in folder.iterdir():
        match = _INDEX_FILE.match(path.name)
        if match and (int(match[1]) not in gallery_ids or match[2] != kind):
            stale.append(path)
    return sorted(stale)


def remove_stale_index_files(ctx: AppContext, *, actor: str) -> list[Path]:
    """Delete the stale index files (audited as 'index.remove_stale'); returns what was removed."""
    stale = stale_index_files(ctx)
    if stale:
        with ctx.db.transaction() as session:
            append_audit(
                session,
                actor=actor,
                action="index.remove_stale",
                target=str(index_dir(ctx)),
                details={"files": [p.name for p in stale]},
            )
            for path in stale:
                path.unlink(missing_ok=True)
    return stale
