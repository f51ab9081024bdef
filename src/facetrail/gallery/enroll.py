"""Bulk enrollment: worker processes analyse images, the parent writes them to the database in batches.

Each worker runs decode → detect → align → quality → embed (and, if the gallery keeps originals, writes the
image to the content-addressed store). The parent hashes each file first, so images already in the gallery
are skipped without being analysed, and commits accepted faces in batches: every batch is one transaction
holding its faces, any new subjects and one audit record. The unique constraint (gallery_id, image_sha256)
backs the skip, so however a run ends (Ctrl-C, kill -9, power loss) rerunning it finishes the job with no
duplicate and nothing lost. Files written for a batch that never committed are swept at the next run.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import multiprocessing
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

import cv2
import numpy as np
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from facetrail.audit.log import append_audit
from facetrail.config import Settings
from facetrail.context import AppContext
from facetrail.errors import FaceTrailError
from facetrail.faces.decode import read_image_bytes
from facetrail.faces.pipeline import AnalyzedFace, FacePipeline
from facetrail.faces.quality import assess_quality
from facetrail.gallery.imagestore import AnyImageStore, store_from_spec, store_spec
from facetrail.gallery.index_sync import add_faces, flush_indexes, get_gallery_index
from facetrail.gallery.manifest import EnrollItem, check_names_agree
from facetrail.gallery.service import (
    check_model,
    image_store,
    load_gallery,
    pipeline_for,
    sweep_image_store,
)
from facetrail.storage.models import Face, Subject

THUMBNAIL_JPEG_QUALITY = 90
REJECT_COLUMNS = ("path", "row", "subject_id", "reason", "detail")


@dataclass(frozen=True)
class EnrollOptions:
    largest_face: bool = False  # several faces: enroll the largest instead of rejecting the image
    workers: int = 2  # 0 analyses in this process (tests, tiny jobs)
    batch_size: int = 64
    max_batch_seconds: float = 2.0  # commit at least this often, so an interruption loses little work


@dataclass(frozen=True)
class Rejection:
    item: EnrollItem
    reason: str  # stable code: missing_file, unreadable_file, image_*, no_face, multiple_faces, quality_fail
    detail: str


@dataclass
class EnrollSummary:
    gallery: str
    total: int = 0
    enrolled: int = 0
    skipped_duplicate: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    subjects_created: int = 0
    batches: int = 0
    interrupted: bool = False
    seconds: float = 0.0
    swept_orphan_images: int | None = None
    face_ids: list[int] = field(default_factory=list)

    @property
    def rejected_by_reason(self) -> dict[str, int]:
        return dict(sorted(Counter(r.reason for r in self.rejected).items()))

    @property
    def processed(self) -> int:
        return self.enrolled + self.skipped_duplicate + len(self.rejected)

    def to_dict(self) -> dict[str, Any]:
        return {
            "gallery": self.gallery,
            "total": self.total,
            "processed": self.processed,
            "enrolled": self.enrolled,
            "skipped_duplicate": self.skipped_duplicate,
            "rejected": len(self.rejected),
            "rejected_by_reason": self.rejected_by_reason,
            "subjects_created": self.subjects_created,
            "batches": self.batches,
            "interrupted": self.interrupted,
            "seconds": round(self.seconds, 2),
            "swept_orphan_images": self.swept_orphan_images,
        }


class EnrollProgress(Protocol):
    def start(self, total: int) -> None: ...

    def advance(self, summary: EnrollSummary) -> None: ...


class EnrollInterrupted(FaceTrailError):
    code = "interrupted"
    exit_code = 130


# ---------------------------------------------------------------- worker side


@dataclass(frozen=True)
class _Accepted:
    sha256: str
    box: dict[str, Any]
    quality: dict[str, Any]
    embedding: bytes
    thumbnail: bytes
    stored: bool


@dataclass(frozen=True)
class _Failed:
    reason: str
    detail: str


_worker: dict[str, Any] = {}


def _init_worker(settings_json: str, store: tuple[str, str, str] | None, largest_face: bool) -> None:
    # Ctrl-C reaches the whole process group; the parent alone decides how to stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _worker.update(
        pipeline=FacePipeline(Settings.model_validate_json(settings_json)),
        store=store_from_spec(store),
        largest_face=largest_face,
    )
    parent = os.getppid()

    def exit_if_orphaned() -> None:  # a parent killed with -9 cannot shut its pool down; don't linger
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=exit_if_orphaned, daemon=True).start()


def _analyze_in_worker(path: str) -> _Accepted | _Failed:
    return analyze_file(_worker["pipeline"], Path(path), _worker["store"], _worker["largest_face"])


def analyze_file(
    pipeline: FacePipeline, path: Path, store: AnyImageStore | None, largest_face: bool
) -> _Accepted | _Failed:
    try:
        data = read_image_bytes(path, pipeline.settings.images)
        image = pipeline.decode(data)
    except FaceTrailError as exc:
        return _Failed(exc.code, exc.message)
    except OSError as exc:
        return _Failed("unreadable_file", f"cannot read the file: {exc.strerror or exc}")
    faces = pipeline.detect(image)
    if not faces:
        return _Failed("no_face", "no face was found in the image")
    if len(faces) > 1 and not largest_face:
        return _Failed(
            "multiple_faces",
            f"the image has {len(faces)} faces; one subject per face, so it is not "
            "enrolled (--largest-face enrolls the largest)",
        )
    face = faces[0]  # largest first
    crop = pipeline.embedder.aligned_crop(image.pixels, face)
    quality = assess_quality(face, crop, pipeline.settings.quality)
    if quality.verdict == "fail":
        return _Failed("quality_fail", "face quality fails: " + "; ".join(quality.reasons))
    vector = pipeline.embedder.embed(image.pixels, [face])[0]
    ok, jpeg = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, THUMBNAIL_JPEG_QUALITY])
    if not ok:  # pragma: no cover - OpenCV encodes any 112x112 BGR array
        return _Failed("thumbnail_failed", "could not encode the aligned face as JPEG")
    analyzed = AnalyzedFace(0, face, quality, crop, None)
    stored = False
    if store is not None:
        store.put(image.sha256, data)
        stored = True
    return _Accepted(
        sha256=image.sha256,
        box=dict(analyzed.to_dict()["box"]),  # type: ignore[call-overload]
        quality=quality.to_dict(),
        embedding=np.asarray(vector).astype("<f4").tobytes(),
        thumbnail=jpeg.tobytes(),
        stored=stored,
    )


class _InlineExecutor(Executor):
    """Runs each task at once in this process: same code path as the pool, without its start-up cost."""

    def __init__(self, pipeline: FacePipeline, store: AnyImageStore | None, largest_face: bool) -> None:
        self._args = (pipeline, store, largest_face)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        pipeline, store, largest = self._args
        future.set_result(analyze_file(pipeline, Path(args[0]), store, largest))
        return future


# ---------------------------------------------------------------- parent side


def _file_sha256(path: Path, max_bytes: int) -> str | None:
    """The file's hash, or None if it is missing/unreadable/too large (the worker then names the reason)."""
    try:
        if path.stat().st_size > max_bytes:
            return None
        with open(path, "rb") as fh:
            return hashlib.file_digest(fh, "sha256").hexdigest()
    except OSError:
        return None


def _reject_for_missing(item: EnrollItem) -> Rejection | None:
    where = f"manifest line {item.row}: " if item.row else ""
    if not item.path.exists():
        return Rejection(item, "missing_file", f"{where}file not found: {item.path}")
    if not item.path.is_file():
        return Rejection(item, "unreadable_file", f"{where}not a regular file: {item.path}")
    if not os.access(item.path, os.R_OK):
        return Rejection(item, "unreadable_file", f"{where}no permission to read: {item.path}")
    return None


class _StopFlag:
    """First Ctrl-C: stop taking new images, commit what is finished, exit. Second: stop at once."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def __enter__(self) -> _StopFlag:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, _signum: int, _frame: FrameType | None) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *_exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def enroll(
    ctx: AppContext,
    gallery_name: str,
    items: Sequence[EnrollItem],
    *,
    actor: str,
    options: EnrollOptions | None = None,
    progress: EnrollProgress | None = None,
    source: str = "",
) -> EnrollSummary:
    """Enroll ``items`` into the gallery; see the module docstring for the guarantees."""
    opts = options or EnrollOptions()
    started = time.monotonic()
    summary = EnrollSummary(gallery=gallery_name, total=len(items))
    with ctx.db.read() as session:
        gallery = load_gallery(session, gallery_name)
        model_id = check_model(ctx, gallery)
        gallery_id, keep_images, source_system = gallery.id, gallery.keep_images, gallery.source_system
        known_names: dict[str, str | None] = {
            external_id: name
            for external_id, name in session.execute(
                select(Subject.external_id, Subject.name).where(Subject.gallery_id == gallery_id)
            ).all()
        }
        known_hashes = set(session.execute(select(Face.image_sha256).where(Face.gallery_id == gallery_id)).scalars())
    check_names_agree(items, known_names)  # before anything is stored

    summary.swept_orphan_images = sweep_image_store(ctx)
    # up to date before adding (e.g. after a run killed before it saved): snapshot + change log, O(changes)
    get_gallery_index(ctx, gallery_id, actor=actor)
    store = image_store(ctx) if keep_images else None
    pipeline = pipeline_for(ctx.settings)
    writer = _BatchWriter(ctx, gallery_id, gallery_name, model_id, source_system, actor, source, summary)
    if progress:
        progress.start(len(items))

    with image_store(ctx).shared_lock(), _StopFlag() as stop:
        executor: Executor
        if opts.workers > 0:
            executor = ProcessPoolExecutor(
                max_workers=opts.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_worker,
                initargs=(pipeline.settings.model_dump_json(), store_spec(store), opts.largest_face),
            )
        else:
            executor = _InlineExecutor(pipeline, store, opts.largest_face)
        try:
            _run(
                executor, items, opts, known_hashes, pipeline.settings.images.max_bytes, writer, summary, progress, stop
            )
        except KeyboardInterrupt:
            summary.interrupted = True
        finally:
            executor.shutdown(wait=True, cancel_futures=True)
        writer.flush()
        if stop.requested:
            summary.interrupted = True
        writer.finish()
    flush_indexes(ctx)
    summary.seconds = time.monotonic() - started
    return summary


def _run(
    executor: Executor,
    items: Sequence[EnrollItem],
    opts: EnrollOptions,
    known: set[str],
    max_bytes: int,
    writer: _BatchWriter,
    summary: EnrollSummary,
    progress: EnrollProgress | None,
    stop: _StopFlag,
) -> None:
    queue: Iterator[EnrollItem] = iter(items)
    in_flight: dict[Future[Any], tuple[EnrollItem, str | None]] = {}
    max_in_flight = max(1, opts.workers) * 4
    hashes_in_run: set[str] = set()

    def note(done: int = 1) -> None:
        if progress and done:
            progress.advance(summary)

    while not stop.requested:
        while len(in_flight) < max_in_flight and not stop.requested:
            item = next(queue, None)
            if item is None:
                break
            missing = _reject_for_missing(item)
            if missing:
                summary.rejected.append(missing)
                note()
                continue
            sha = _file_sha256(item.path, max_bytes)
            if isinstance(sha, str) and (sha in known or sha in hashes_in_run):
                summary.skipped_duplicate += 1
                note()
                continue
            if isinstance(sha, str):
                hashes_in_run.add(sha)
            in_flight[executor.submit(_analyze_in_worker, str(item.path))] = (item, sha)
        if not in_flight:
            break
        done, _ = wait(in_flight, timeout=0.5, return_when=FIRST_COMPLETED)
        for future in done:
            item, _sha = in_flight.pop(future)
            try:
                result = future.result()
            except BrokenProcessPool:
                if stop.requested:  # a worker got the terminal's Ctrl-C before it could ignore it
                    return
                raise
            if isinstance(result, _Failed):
                where = f"manifest line {item.row}: " if item.row else ""
                summary.rejected.append(Rejection(item, result.reason, where + result.detail))
            else:
                writer.add(item, result)
            note()
        writer.flush_if_due(opts)


class _BatchWriter:
    """Accepted faces, committed in batches: faces + new subjects + one audit record per transaction."""

    def __init__(
        self,
        ctx: AppContext,
        gallery_id: int,
        gallery_name: str,
        model_id: str,
        source_system: str,
        actor: str,
        source: str,
        summary: EnrollSummary,
    ) -> None:
        self.ctx, self.gallery_id, self.gallery_name = ctx, gallery_id, gallery_name
        self.model_id, self.source_system, self.actor, self.source = model_id, source_system, actor, source
        self.summary = summary
        self.pending: list[tuple[EnrollItem, _Accepted]] = []
        self.last_flush = time.monotonic()

    def add(self, item: EnrollItem, accepted: _Accepted) -> None:
        self.pending.append((item, accepted))

    def flush_if_due(self, opts: EnrollOptions) -> None:
        if len(self.pending) >= opts.batch_size or (
            self.pending and time.monotonic() - self.last_flush >= opts.max_batch_seconds
        ):
            self.flush()

    def flush(self) -> None:
        self.last_flush = time.monotonic()
        if not self.pending:
            return
        batch, self.pending = self.pending, []
        for attempt in range(3):
            try:
                face_ids, vectors, duplicates, created = self._commit(batch)
                break
            except IntegrityError:  # a concurrent run added the same subject or image: re-read and retry
                if attempt == 2:
                    raise
        self.summary.enrolled += len(face_ids)
        self.summary.skipped_duplicate += duplicates
        self.summary.subjects_created += created
        self.summary.batches += 1
        self.summary.face_ids.extend(face_ids)
        if face_ids:
            add_faces(self.ctx, self.gallery_id, face_ids, np.vstack(vectors))

    def _commit(self, batch: list[tuple[EnrollItem, _Accepted]]) -> tuple[list[int], list[np.ndarray], int, int]:
        with self.ctx.db.transaction() as session:
            hashes = [a.sha256 for _, a in batch]
            present = set(
                session.execute(
                    select(Face.image_sha256).where(Face.gallery_id == self.gallery_id, Face.image_sha256.in_(hashes))
                ).scalars()
            )
            subject_ids = sorted({item.subject_id for item, _ in batch})
            subjects = {
                s.external_id: s
                for s in session.execute(
                    select(Subject).where(Subject.gallery_id == self.gallery_id, Subject.external_id.in_(subject_ids))
                ).scalars()
            }
            created: list[str] = []
            faces: list[tuple[Face, np.ndarray]] = []
            duplicates = 0
            for item, acc in batch:
                if acc.sha256 in present:
                    duplicates += 1
                    continue
                present.add(acc.sha256)
                subject = subjects.get(item.subject_id)
                if subject is None:
                    subject = Subject(
                        gallery_id=self.gallery_id, external_id=item.subject_id, name=item.name, notes=item.notes
                    )
                    session.add(subject)
                    subjects[item.subject_id] = subject
                    created.append(item.subject_id)
                else:  # rows of one subject may come in any order: keep the first non-empty name and notes
                    if item.name and not subject.name:
                        subject.name = item.name
                    if item.notes and not subject.notes:
                        subject.notes = item.notes
                face = Face(
                    gallery_id=self.gallery_id,
                    subject=subject,
                    image_sha256=acc.sha256,
                    image_stored=acc.stored,
                    source_system=self.source_system,
                    source_record_id=item.source_record_id,
                    capture_date=item.capture_date,
                    enrolled_by=self.actor,
                    box=acc.box,
                    quality=acc.quality,
                    model_id=self.model_id,
                    embedding=acc.embedding,
                    thumbnail=acc.thumbnail,
                )
                session.add(face)
                faces.append((face, np.frombuffer(acc.embedding, dtype="<f4")))
            session.flush()
            face_ids = [f.id for f, _ in faces]
            append_audit(
                session,
                actor=self.actor,
                action="enroll.batch",
                target=f"gallery:{self.gallery_name}",
                details={
                    "gallery_id": self.gallery_id,
                    "model_id": self.model_id,
                    "source": self.source,
                    "enrolled": len(face_ids),
                    "skipped_duplicate": duplicates,
                    "face_ids": face_ids,
                    # a count, never the subjects' ids: with face ids they would let an auditor name a search's
                    # candidates (the audit log names nobody who was not released)
                    "subjects_created": len(created),
                },
            )
        return face_ids, [v for _, v in faces], duplicates, len(created)

    def finish(self) -> None:
        """One closing record for the run: the counts, including what was rejected and why."""
        s = self.summary
        with self.ctx.db.transaction() as session:
            append_audit(
                session,
                actor=self.actor,
                action="enroll.run",
                target=f"gallery:{self.gallery_name}",
                outcome="interrupted" if s.interrupted else "ok",
                details={
                    "gallery_id": self.gallery_id,
                    "model_id": self.model_id,
                    "source": self.source,
                    **{k: v for k, v in s.to_dict().items() if k not in ("gallery", "seconds")},
                },
            )


def write_rejects_csv(path: Path, rejected: Sequence[Rejection]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(REJECT_COLUMNS)
        for r in rejected:
            writer.writerow([str(r.item.path), r.item.row or "", r.item.subject_id, r.reason, r.detail])
    os.replace(tmp, path)
    return path


def default_rejects_path(data_dir: Path, gallery_name: str) -> Path:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in gallery_name)
    return data_dir / "enroll-rejects" / f"{safe}-{stamp}.csv"
