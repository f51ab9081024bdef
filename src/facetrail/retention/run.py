"""Apply every gallery's retention rule, and the probe-image retention period: ``facetrail retention run``
and the server's schedule. A dry run plans and reports without changing anything.

Each due subject (or set of faces) is deleted in its own transaction through retention.deletion, which
re-checks legal holds under a row lock, so a run is safe beside requests and beside another run (a subject
another run already deleted is reported as 'gone'). Certificates are issued after one storage purge.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from facetrail.audit.log import append_audit
from facetrail.cluster.held_probes import purge_expired
from facetrail.context import AppContext
from facetrail.errors import FaceTrailError
from facetrail.examination.enhanced_images import remove_derived
from facetrail.gallery.index_sync import trim_change_log
from facetrail.gallery.search import probe_store
from facetrail.retention.deletion import PendingCertificate, delete_rows, issue_certificates, purge_storage
from facetrail.retention.holds import LegalHoldError, held_cases, held_subjects
from facetrail.retention.models import RetentionRuleRow
from facetrail.retention.rules import RetentionRule, dispositions
from facetrail.storage.models import Face, Gallery, SearchRecord, Subject

SYSTEM_ACTOR = "system:retention"
_RUN_LOCK = threading.Lock()  # one run at a time per process (the schedule and an API call)


@dataclass
class PlannedAction:
    kind: str  # subject | faces | probe
    reason: str
    gallery: str | None = None
    external_id: str | None = None
    face_ids: list[int] = field(default_factory=list)
    search_ids: list[int] = field(default_factory=list)
    probe_sha256: str | None = None
    status: str = "due"  # due | held | deleted | gone | failed
    hold_ids: list[int] = field(default_factory=list)
    certificate_seq: int | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class RetentionReport:
    dry_run: bool
    as_of: str
    actions: list[PlannedAction]
    storage: dict[str, Any] | None = None
    expired: dict[str, int] | None = None  # short-lived rows deleted: held probes, searched faces, change log

    def count(self, status: str) -> int:
        return sum(1 for a in self.actions if a.status == status)

    def to_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "as_of": self.as_of,
            "summary": {s: self.count(s) for s in ("due", "held", "deleted", "gone", "failed")},
            "actions": [a.to_dict() for a in self.actions],
            "storage": self.storage,
            "expired": self.expired,
        }


def _reference_date(face: Face) -> dt.date:
    return face.capture_date or face.enrolled_at.date()


def plan(ctx: AppContext, today: dt.date | None = None) -> list[PlannedAction]:
    """What the rules make due on ``today`` (UTC date by default), held subjects marked 'held'."""
    today = today or dt.datetime.now(dt.UTC).date()
    actions: list[PlannedAction] = []
    with ctx.db.read() as session:
        rules = session.execute(
            select(Gallery, RetentionRuleRow)
            .join(RetentionRuleRow, RetentionRuleRow.gallery_id == Gallery.id)
            .order_by(Gallery.name)
        ).all()
        for gallery, row in rules:
            rule = RetentionRule.model_validate_json(row.rule)
            actions.extend(_plan_gallery(session, gallery, rule, today))
        actions.extend(_plan_probes(ctx, session, today))
    return actions


def _plan_gallery(session: Any, gallery: Gallery, rule: RetentionRule, today: dt.date) -> list[PlannedAction]:
    held = held_subjects(session, gallery.id)
    outcomes = dispositions(session, gallery.id)
    faces_by_subject: dict[int, list[Face]] = {}
    for face in session.execute(select(Face).where(Face.gallery_id == gallery.id).order_by(Face.id)).scalars():
        faces_by_subject.setdefault(face.subject_id, []).append(face)
    out = []
    for subject in session.execute(
        select(Subject).where(Subject.gallery_id == gallery.id).order_by(Subject.external_id)
    ).scalars():
        faces = faces_by_subject.get(subject.id, [])
        outcome = outcomes.get(subject.id)
        action: PlannedAction | None = None
        if outcome is not None and outcome in rule.delete_on_disposition:
            action = PlannedAction(
                "subject", f"record marked {outcome}; rule: {rule.describe()}", face_ids=[f.id for f in faces]
            )
        elif rule.has_age_limit:
            due = [f for f in faces if (d := rule.due_date(_reference_date(f))) is not None and d <= today]
            subject_due = rule.due_date(subject.created_at.date())
            if (faces and len(due) == len(faces)) or (not faces and subject_due is not None and subject_due <= today):
                action = PlannedAction(
                    "subject",
                    f"every face past its retention period; rule: {rule.describe()}",
                    face_ids=[f.id for f in faces],
                )
            elif due:
                action = PlannedAction(
                    "faces",
                    f"face(s) past their retention period; rule: {rule.describe()}",
                    face_ids=[f.id for f in due],
                )
        if action is None:
            continue
        action.gallery, action.external_id = gallery.name, subject.external_id
        if subject.external_id in held:
            action.status, action.hold_ids = "held", held[subject.external_id]
        out.append(action)
    return out


def probe_retention_days(ctx: AppContext) -> int:
    """How long kept probe images live: the policy in force decides (docs/policy.md, retention.probe_image_days)."""
    from facetrail.governance.policy import active_policy

    return active_policy(ctx).retention.probe_image_days


def _plan_probes(ctx: AppContext, session: Any, today: dt.date) -> list[PlannedAction]:
    """Stored probe images older than the probe retention period, unless their case is held. A file shared
    by several searches goes only when no search that still keeps it refers to it."""
    days = probe_retention_days(ctx)
    cutoff = dt.datetime.combine(today - dt.timedelta(days=days), dt.time(), dt.UTC)
    cases = held_cases(session)
    stored = session.execute(
        select(SearchRecord.id, SearchRecord.probe_sha256, SearchRecord.case_number, SearchRecord.created_at).where(
            SearchRecord.probe_stored.is_(True)
        )
    ).all()
    by_hash: dict[str, list[Any]] = {}
    for row in stored:
        by_hash.setdefault(row.probe_sha256, []).append(row)
    out = []
    for sha, rows in sorted(by_hash.items()):
        expired = [r for r in rows if _aware(r.created_at) < cutoff]
        if not expired:
            continue
        held_rows = [r for r in expired if r.case_number in cases]
        free = [r for r in expired if r.case_number not in cases]
        if held_rows:
            out.append(
                PlannedAction(
                    "probe",
                    f"case {', '.join(sorted({r.case_number for r in held_rows}))} under legal hold",
                    search_ids=[r.id for r in held_rows],
                    probe_sha256=sha,
                    status="held",
                )
            )
        if free:
            out.append(
                PlannedAction(
                    "probe", f"probe image older than {days} days", search_ids=[r.id for r in free], probe_sha256=sha
                )
            )
    return out


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


Progress = Callable[[PlannedAction], None]


def run_retention(
    ctx: AppContext,
    *,
    dry_run: bool,
    actor: str = SYSTEM_ACTOR,
    today: dt.date | None = None,
    progress: Progress | None = None,
    audit_empty: bool = True,
) -> RetentionReport:
    """Plan, then (unless ``dry_run``) delete what is due, purge storage once and issue the certificates.
    A 'retention.run' record summarises every real run (scheduled runs with nothing due are not recorded
    when ``audit_empty`` is off)."""
    as_of = today or dt.datetime.now(dt.UTC).date()
    with _RUN_LOCK:
        actions = plan(ctx, as_of)
        report = RetentionReport(dry_run, as_of.isoformat(), actions)
        if dry_run:
            for action in actions:
                if progress:
                    progress(action)
            return report
        report.expired = {
            **purge_expired(ctx, login_window_seconds=ctx.settings.auth.ip_window_seconds),
            "gallery_changes": trim_change_log(ctx),
        }
        pendings: list[tuple[PlannedAction, PendingCertificate]] = []
        for action in actions:
            if action.status == "due":
                pending = _apply(ctx, action, actor)
                if pending is not None:
                    pendings.append((action, pending))
            if progress:
                progress(action)
        if pendings:
            report.storage = purge_storage(ctx)
            for (action, _), cert in zip(
                pendings, issue_certificates(ctx, [p for _, p in pendings], report.storage), strict=True
            ):
                action.certificate_seq = cert["seq"]
        if pendings or audit_empty or report.count("failed"):
            with ctx.db.transaction() as session:
                summary = report.to_dict()
                append_audit(
                    session,
                    actor=actor,
                    action="retention.run",
                    target="retention",
                    details={
                        "as_of": report.as_of,
                        "summary": summary["summary"],
                        "expired": report.expired,
                        "certificates": [a.certificate_seq for a in actions if a.certificate_seq],
                        "held": [
                            {
                                "gallery": a.gallery,
                                "external_id": a.external_id,
                                "hold_ids": a.hold_ids,
                                "search_ids": a.search_ids,
                            }
                            for a in actions
                            if a.status == "held"
                        ],
                        "failed": [
                            {"gallery": a.gallery, "external_id": a.external_id, "error": a.error}
                            for a in actions
                            if a.status == "failed"
                        ],
                    },
                )
        return report


def _apply(ctx: AppContext, action: PlannedAction, actor: str) -> PendingCertificate | None:
    basis = {"kind": "retention_rule", "rule_reason": action.reason}
    try:
        if action.kind == "probe":
            return _delete_probe(ctx, action, actor)
        pending = delete_rows(
            ctx,
            action.gallery or "",
            action.external_id,
            face_ids=None if action.kind == "subject" else action.face_ids,
            actor=actor,
            reason=f"retention: {action.reason}",
            basis=basis,
        )
    except LegalHoldError as exc:  # a hold placed after planning: respected, and already audited
        held_by = exc.details.get("hold_ids")
        action.status, action.hold_ids = "held", [int(h) for h in held_by] if isinstance(held_by, list) else []
        return None
    except FaceTrailError as exc:
        if exc.code.endswith("_not_found"):  # deleted meanwhile (by hand, or by another run)
            action.status = "gone"
            return None
        action.status, action.error = "failed", exc.message
        return None
    action.status = "deleted"
    action.face_ids = [f["face_id"] for f in pending.faces]
    return pending


def _delete_probe(ctx: AppContext, action: PlannedAction, actor: str) -> PendingCertificate | None:
    sha = action.probe_sha256 or ""
    with ctx.db.transaction() as session:
        cases = held_cases(session)
        rows = list(
            session.execute(
                select(SearchRecord)
                .where(SearchRecord.id.in_(action.search_ids), SearchRecord.probe_stored.is_(True))
                .with_for_update()
            ).scalars()
        )
        rows = [r for r in rows if r.case_number not in cases]
        if not rows:
            action.status = "gone"
            return None
        for row in rows:
            row.probe_stored = False
        session.flush()
        still_kept = session.execute(
            select(SearchRecord.id)
            .where(SearchRecord.probe_sha256 == sha, SearchRecord.probe_stored.is_(True))
            .limit(1)
        ).first()
        append_audit(
            session,
            actor=actor,
            action="probe.delete",
            target="probes",
            details={
                "probe_sha256": sha,
                "search_ids": [r.id for r in rows],
                "reason": action.reason,
                "file_kept_for_other_searches": still_kept is not None,
            },
        )
        probes = [{"search_id": r.id, "case_number": r.case_number, "probe_sha256": sha} for r in rows]
    file_removed = still_kept is None and probe_store(ctx).remove(sha)
    # the enhanced copies of these searches' probe go with it (those of a search that keeps it stay)
    derived = remove_derived(ctx, [sha], search_ids=[r.id for r in rows])
    action.status, action.search_ids = "deleted", [r.id for r in rows]
    return PendingCertificate(
        scope="probes",
        gallery=None,
        gallery_id=None,
        external_id=None,
        actor=actor,
        reason=f"retention: {action.reason}",
        basis={"kind": "probe_retention", "days": probe_retention_days(ctx)},
        deleted_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        probes=probes,
        images_removed=[sha] if file_removed else [],
        images_still_referenced=[sha] if still_kept is not None else [],
        derived_images_removed=derived,
    )
