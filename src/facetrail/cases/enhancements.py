"""Logged enhancement of an examination's probe and candidate images, for the reviewer examining it
(docs/examination.md, "Enhancement without altering evidence").

Guarantees:
- the original is never changed. It is the very image the examination shows (cases.examinations: the kept
  probe, else the searched face still held; a candidate's enrolled photo, else its thumbnail), read from its
  store; where a SHA-256 was recorded for it (the search's probe, a face's kept original) the bytes are checked
  against it before every use, and a mismatch is refused ('original_altered', audited) rather than enhanced;
- an enhancement is a new image made server-side by examination.enhance from the ORIGINAL and the whole chain of
  logged steps (never from a stored derived file, which could have been swapped); it is stored in the
  'enhanced' image store under its own SHA-256 and logged: one ``ImageEnhancement`` row (operation, normalised
  parameters, the chain, user, time, purpose, the parent's and the result's hash) and one audit record
  'enhancement.create'. Responses say ``enhanced: true`` and carry the parent's hash;
- ``replay`` makes the image again from the original and the logged chain and says whether it is identical
  (audited 'enhancement.replay'; outcome 'failed' when it is not);
- who: only the reviewer whose examination task it is (cases.examinations: another reviewer's task, another
  unit's and none at all read "not found"), never on a locked emergency search; candidates only once the probe
  analysis is recorded (sequential unmasking), and only by their opaque handle. Nothing here reveals a
  candidate's rank, score or identity, or whether a task is a known-answer test: the responses have the same
  shape for both. Auditors read a search's log (metadata: hashes, operations, purposes), never the images.
  Investigators and administrators have no access. Every refusal goes through the one gate (audit.refusals);
- retention: examination.enhanced_images.remove_derived.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from facetrail.audit.log import append_audit
from facetrail.audit.refusals import clip, ensure_permission, refuse
from facetrail.cases import examinations as exams
from facetrail.cases.searches import load_in_scope
from facetrail.cluster import held_probes
from facetrail.context import AppContext
from facetrail.errors import BadInputError, FaceTrailError, NotFoundError
from facetrail.examination import enhance
from facetrail.examination.enhanced_images import ImageEnhancement, enhanced_store
from facetrail.gallery.search import probe_store
from facetrail.gallery.service import image_store
from facetrail.policy.principal import Principal
from facetrail.policy.roles import Permission
from facetrail.storage.models import Face, User
from facetrail.text import check_text

PROBE, CANDIDATE = "probe", "candidate"
IMAGE_KINDS = (PROBE, CANDIDATE)
MAX_PURPOSE = 1000
CREATE_ACTION = "enhancement.create"
VIEW_ACTION = "enhancement.view"
LOG_ACTION = "enhancement.log"
REPLAY_ACTION = "enhancement.replay"


class OriginalAlteredError(FaceTrailError):
    """The stored original no longer hashes to the SHA-256 recorded with it: nothing is derived from it."""

    code = "original_altered"
    http_status = 409


class OriginalUnavailableError(NotFoundError):
    code = "original_not_kept"


class EnhancementNotFoundError(NotFoundError):
    code = "enhancement_not_found"


@dataclass(frozen=True)
class Original:
    kind: str  # probe | candidate
    handle: str | None
    photo: int
    face_id: int | None
    sha256: str
    data: bytes


# ------------------------------------------------------------------ the original an examination shows


def _checked(data: bytes | None, recorded: str | None) -> tuple[str, bytes]:
    if data is None:
        raise OriginalUnavailableError("the original image is not retained: nothing to enhance")
    actual = hashlib.sha256(data).hexdigest()
    if recorded is not None and actual != recorded:
        raise OriginalAlteredError(
            "the stored original does not hash to the SHA-256 recorded with it: it was altered, and nothing is "
            "derived from it"
        )
    return actual, data


def _face_original(ctx: AppContext, face_id: int) -> tuple[str, bytes]:
    """A face's kept original (checked against its recorded hash), else its thumbnail (as the examination)."""
    with ctx.db.read() as s:
        face = s.get(Face, face_id)
        if face is None:
            raise OriginalUnavailableError("the candidate's face was deleted")
        sha, stored, thumbnail = face.image_sha256, face.image_stored, bytes(face.thumbnail)
    if stored:
        return _checked(image_store(ctx).get(sha), sha)
    return _checked(thumbnail, None)


def _probe_original(ctx: AppContext, task: Any) -> tuple[str, bytes, int | None]:
    if task.search is not None:
        record = task.search
        if record.probe_stored:
            sha, data = _checked(probe_store(ctx).get(record.probe_sha256), record.probe_sha256)
            return sha, data, None
        sha, data = _checked(held_probes.searched_face(ctx, record.id), None)
        return sha, data, None
    face_id = int(task.known_answer.probe_face_id)
    sha, data = _checked(exams.known_answer_probe(ctx, task), None)  # served as a live probe would be
    return sha, data, face_id


def _original(ctx: AppContext, task: Any, kind: str, handle: str | None, photo: int, face_id: int | None) -> Original:
    if kind == PROBE:
        sha, data, probe_face = _probe_original(ctx, task)
        return Original(PROBE, None, 0, probe_face, sha, data)
    assert face_id is not None
    faces = exams._subject_faces(ctx, face_id, probe_face_id=exams.probe_face_of(task))
    if not 0 <= photo < len(faces):
        raise EnhancementNotFoundError("no such photo of this candidate", field="photo")
    sha, data = _face_original(ctx, faces[photo].id)
    return Original(CANDIDATE, handle, photo, faces[photo].id, sha, data)


# ------------------------------------------------------------------ enhancing


def _clean_purpose(purpose: str) -> str:
    text = check_text("purpose", " ".join(str(purpose or "").split()), max_len=MAX_PURPOSE)
    if len(text) < 3:
        raise BadInputError("say why this enhancement is needed (purpose, at least 3 characters)", field="purpose")
    if len(text) > MAX_PURPOSE:
        raise BadInputError(f"the purpose is at most {MAX_PURPOSE} characters", field="purpose")
    return text


def _chain_of(ctx: AppContext, task_id: int, original: Original, parent_sha256: str) -> list[dict[str, Any]]:
    """The steps from the original to ``parent_sha256`` (empty for the original itself), from the task's log."""
    if parent_sha256 == original.sha256:
        return []
    with ctx.db.read() as s:
        row = s.execute(
            select(ImageEnhancement)
            .where(
                ImageEnhancement.task_id == task_id,
                ImageEnhancement.original_sha256 == original.sha256,
                ImageEnhancement.result_sha256 == parent_sha256,
            )
            .order_by(ImageEnhancement.id)
            .limit(1)
        ).scalar_one_or_none()
        if row is None:
            raise EnhancementNotFoundError(
                "the parent image is neither the original nor an enhancement of it in this examination",
                field="parent_sha256",
            )
        return [dict(step) for step in row.steps]


def enhance_image(
    ctx: AppContext,
    who: Principal,
    public_id: str,
    *,
    image: str,
    candidate: str | None = None,
    photo: int = 0,
    parent_sha256: str | None = None,
    operation: str,
    parameters: dict[str, Any],
    purpose: str,
) -> dict[str, Any]:
    """Apply one operation to a copy of the probe's or a candidate's image (or of an enhancement of it), made
    again from the original and the logged chain; store it, log it and audit it. Returns the log entry."""
    action = CREATE_ACTION
    task = exams._load(ctx, who, public_id, action)
    target = f"examination:{task.public_id}"
    attempted = {"image": clip(str(image)), "operation": clip(str(operation)), "parent_sha256": parent_sha256}
    face_id: int | None = None
    if image == CANDIDATE:
        exams._require_comparison(ctx, who, task, action)  # candidates only after the probe analysis
        face_id = exams._row(ctx, who, task, str(candidate or ""), action).face_id
    try:
        if image not in IMAGE_KINDS:
            raise BadInputError(f"image must be one of {list(IMAGE_KINDS)}", field="image")
        op = enhance.parse_operation(operation)
        params = enhance.normalise(op, parameters)
        why = _clean_purpose(purpose)
        original = _original(ctx, task, image, candidate if image == CANDIDATE else None, photo, face_id)
        parent = parent_sha256 or original.sha256
        chain = _chain_of(ctx, task.id, original, parent)
        if len(chain) >= enhance.MAX_STEPS:
            raise enhance.EnhancementError(f"at most {enhance.MAX_STEPS} steps from an original", field="steps")
        steps = [*chain, {"operation": op.value, "parameters": params}]
        result = enhance.replay(original.data, [(s["operation"], s["parameters"]) for s in steps], ctx.settings.images)
    except FaceTrailError as exc:
        raise refuse(ctx, who, action, target, exc, details=attempted) from None
    enhanced_store(ctx).put(result.sha256, result.png)
    with ctx.db.transaction() as s:
        row = ImageEnhancement(
            task_id=task.id,
            search_id=task.search.id if task.search is not None else None,
            image_kind=original.kind,
            handle=original.handle,
            photo=original.photo,
            face_id=original.face_id,
            original_sha256=original.sha256,
            parent_sha256=parent,
            result_sha256=result.sha256,
            pixels_sha256=result.pixels_sha256,
            step=len(steps),
            operation=op.value,
            parameters=params,
            steps=steps,
            purpose=why,
            user_id=who.user_id,
            actor=who.actor,
            width=result.width,
            height=result.height,
            image_stored=True,
        )
        s.add(row)
        s.flush()
        append_audit(
            s,
            actor=who.actor,
            action=action,
            target=target,
            details={
                "task": task.public_id,
                "enhancement_id": row.id,
                "image": original.kind,  # the log names no candidate: the handle only
                "handle": original.handle,
                "original_sha256": original.sha256,
                "parent_sha256": parent,
                "result_sha256": result.sha256,
                "pixels_sha256": result.pixels_sha256,
                "step": len(steps),
                "operation": op.value,
                "parameters": params,
                "purpose": clip(why),
                **who.audit_context(),
            },
        )
        return entry_dict(row, who.username, task.public_id)


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def entry_dict(row: ImageEnhancement, username: str | None, public_id: str | None) -> dict[str, Any]:
    """One log entry as the examiner (``public_id``: their task) or an auditor (None) sees it."""
    out: dict[str, Any] = {
        "id": row.id,
        "image": row.image_kind,
        "candidate": row.handle,
        "photo": row.photo,
        "original_sha256": row.original_sha256,
        "parent_sha256": row.parent_sha256,
        "sha256": row.result_sha256,
        "pixels_sha256": row.pixels_sha256,
        "step": row.step,
        "operation": row.operation,
        "parameters": dict(row.parameters),
        "steps": [dict(s) for s in row.steps],
        "purpose": row.purpose,
        "user": username,
        "created_at": _aware(row.created_at),
        "width": row.width,
        "height": row.height,
        "enhanced": True,
        "image_stored": row.image_stored,
        "image_url": None,
    }
    if public_id is not None:
        out["image_url"] = f"/api/v1/examinations/{public_id}/enhancements/{row.result_sha256}/image"
    return out


# ------------------------------------------------------------------ reading the log and the images


def _task_rows(ctx: AppContext, task_id: int) -> list[tuple[ImageEnhancement, str | None]]:
    with ctx.db.read() as s:
        rows = s.execute(
            select(ImageEnhancement, User.username)
            .outerjoin(User, User.id == ImageEnhancement.user_id)
            .where(ImageEnhancement.task_id == task_id)
            .order_by(ImageEnhancement.id)
        ).all()
        for row, _ in rows:
            s.expunge(row)
        return [(row, name) for row, name in rows]


def search_log(ctx: AppContext, search_id: int) -> list[dict[str, Any]]:
    """Every logged step on a search's images (both examiners), oldest first; no permission check: for reports,
    whose callers check."""
    with ctx.db.read() as s:
        rows = s.execute(
            select(ImageEnhancement, User.username)
            .outerjoin(User, User.id == ImageEnhancement.user_id)
            .where(ImageEnhancement.search_id == search_id)
            .order_by(ImageEnhancement.id)
        ).all()
        return [entry_dict(row, name, None) | {"face_id": row.face_id} for row, name in rows]


def enhancement_log(ctx: AppContext, who: Principal, public_id: str) -> list[dict[str, Any]]:
    """The examiner's own log on their task (audited 'enhancement.log')."""
    task = exams._load(ctx, who, public_id, LOG_ACTION)
    entries = [entry_dict(row, name, task.public_id) for row, name in _task_rows(ctx, task.id)]
    _audit(ctx, who, LOG_ACTION, f"examination:{task.public_id}", {"task": task.public_id, "entries": len(entries)})
    return entries


def audit_log(ctx: AppContext, who: Principal, search_id: int) -> list[dict[str, Any]]:
    """A search's whole enhancement log for auditors (metadata only; audited 'enhancement.log')."""
    target = f"search:{search_id}"
    ensure_permission(ctx, who, Permission.SEARCH_METADATA_ALL, action=LOG_ACTION, target=target)
    load_in_scope(ctx, who, search_id, LOG_ACTION)
    entries = [{k: v for k, v in e.items() if k != "face_id"} for e in search_log(ctx, search_id)]
    _audit(ctx, who, LOG_ACTION, target, {"search_id": search_id, "entries": len(entries)})
    return entries


def _audit(ctx: AppContext, who: Principal, action: str, target: str, details: dict[str, Any]) -> None:
    with ctx.db.transaction() as s:
        append_audit(s, actor=who.actor, action=action, target=target, details={**details, **who.audit_context()})


def _row_for(ctx: AppContext, who: Principal, task: Any, sha256: str, action: str) -> ImageEnhancement:
    with ctx.db.read() as s:
        row = s.execute(
            select(ImageEnhancement)
            .where(ImageEnhancement.task_id == task.id, ImageEnhancement.result_sha256 == sha256)
            .order_by(ImageEnhancement.id)
            .limit(1)
        ).scalar_one_or_none()
        if row is not None:
            s.expunge(row)
            return row
    raise refuse(
        ctx,
        who,
        action,
        f"examination:{task.public_id}",
        EnhancementNotFoundError("no such enhanced image in this examination"),
        details={"sha256": clip(sha256)},
        outcome="not_found",
    )


def enhanced_image(ctx: AppContext, who: Principal, public_id: str, sha256: str) -> bytes:
    """A derived image of the examiner's task (PNG), checked against its hash before it is served; audited
    'enhancement.view'."""
    task = exams._load(ctx, who, public_id, VIEW_ACTION)
    row = _row_for(ctx, who, task, sha256, VIEW_ACTION)
    data = enhanced_store(ctx).get(sha256) if row.image_stored else None
    if data is None or hashlib.sha256(data).hexdigest() != sha256:
        raise refuse(
            ctx,
            who,
            VIEW_ACTION,
            f"examination:{task.public_id}",
            EnhancementNotFoundError("the enhanced image is no longer stored (or its file was altered)"),
            details={"sha256": sha256},
            outcome="not_found",
        )
    _audit(ctx, who, VIEW_ACTION, f"examination:{task.public_id}", {"task": task.public_id, "sha256": sha256})
    return data


def replay(ctx: AppContext, who: Principal, public_id: str, sha256: str) -> dict[str, Any]:
    """Make a logged enhancement again from the original and its logged chain; say whether the result is
    identical to the one logged (audited 'enhancement.replay'; outcome 'failed' when it is not)."""
    task = exams._load(ctx, who, public_id, REPLAY_ACTION)
    target = f"examination:{task.public_id}"
    row = _row_for(ctx, who, task, sha256, REPLAY_ACTION)
    try:
        original = _original(ctx, task, row.image_kind, row.handle, row.photo, _candidate_face(ctx, task, row))
        steps = [(s["operation"], s["parameters"]) for s in row.steps]
        result = enhance.replay(original.data, steps, ctx.settings.images)
    except FaceTrailError as exc:
        raise refuse(ctx, who, REPLAY_ACTION, target, exc, details={"sha256": sha256}) from None
    outcome = {
        "sha256": row.result_sha256,
        "replayed_sha256": result.sha256,
        "pixels_sha256": row.pixels_sha256,
        "replayed_pixels_sha256": result.pixels_sha256,
        "identical": result.sha256 == row.result_sha256,
        "pixels_identical": result.pixels_sha256 == row.pixels_sha256,
        "original_sha256": original.sha256,
        "logged_original_sha256": row.original_sha256,
        "steps": [dict(s) for s in row.steps],
    }
    with ctx.db.transaction() as s:
        append_audit(
            s,
            actor=who.actor,
            action=REPLAY_ACTION,
            target=target,
            outcome="ok" if outcome["identical"] else "failed",
            details={"task": task.public_id, **{k: v for k, v in outcome.items() if k != "steps"}}
            | who.audit_context(),
        )
    return outcome


def _candidate_face(ctx: AppContext, task: Any, row: ImageEnhancement) -> int | None:
    """The candidate (the face its handle names in the task) whose photo ``row`` enhanced."""
    if row.image_kind != CANDIDATE:
        return None
    for candidate in exams._rows(ctx, task):
        if candidate.handle == row.handle:
            return int(candidate.face_id)
    raise EnhancementNotFoundError("the candidate is no longer part of this examination")
