"""Random audit sampling: each period (policy ``[sampling]``) a share of the period's searches is drawn for an
auditor to check (was the case real, the justification adequate, the offense right).

The draw is a function of the audit chain only, so anybody holding an export can recompute it (the script in
docs/oversight.md does) and nobody can choose it:
- population: the chain's 'search' records with outcome 'ok' whose ts is in [period start, period end);
- seed: the hash of the first 'audit.checkpoint' record at or after the period end: a record nobody can
  predict (its hash covers microsecond time and everything before it) and that a signed checkpoint vouches for;
- draw: k = max(minimum, ceil(share x population)) (at most the population; 0 when share is 0) searches with
  the lowest SHA-256(seed_hash + ":" + search_id).
Changing the sample means changing a population record or the seed record, i.e. breaking the chain or the
signed checkpoint (tests/storage/test_oversight.py proves it). Each draw is audited
('oversight.sample.draw', with the seed, the population size and the drawn ids); auditors record one finding per
drawn search ('oversight.sample.finding'); findings are counted in the transparency report.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from facetrail.audit.log import append_audit
from facetrail.context import AppContext
from facetrail.errors import BadInputError, ConflictError, FaceTrailError, NotFoundError, PermissionDeniedError
from facetrail.governance.oversight_rules import SamplingRules
from facetrail.governance.policy import active_policy
from facetrail.oversight import notify
from facetrail.oversight.models import SampleDraw, SampleItem
from facetrail.policy.principal import Principal
from facetrail.policy.roles import Permission
from facetrail.storage.models import AuditRecord, SearchRecord, Unit, utcnow

ADEQUATE, INADEQUATE = "adequate", "inadequate"
CHECKS = ("case_real", "justification_adequate", "offense_right")
MAX_NOTE = 5000


class SampleNotReadyError(FaceTrailError):
    """The period has not ended, or no audit checkpoint was taken since it ended."""

    code = "sample_not_ready"
    http_status = 409
    exit_code = 5


class SampleItemNotFoundError(NotFoundError):
    code = "sample_item_not_found"


def _ts(value: dt.datetime) -> str:
    """The stored form of audit ``ts`` (fixed-width ISO-8601 UTC), so strings compare as times."""
    return value.astimezone(dt.UTC).isoformat(timespec="microseconds")


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def period_of(kind: str, moment: dt.datetime) -> tuple[str, dt.datetime, dt.datetime]:
    """The (label, start, end) in UTC of the period of ``kind`` containing ``moment``."""
    day = moment.astimezone(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if kind == "day":
        return f"day:{day.date()}", day, day + dt.timedelta(days=1)
    if kind == "week":
        start = day - dt.timedelta(days=day.weekday())
        return f"week:{start.date()}", start, start + dt.timedelta(days=7)
    start = day.replace(day=1)
    end = (start + dt.timedelta(days=32)).replace(day=1)
    return f"month:{start:%Y-%m}", start, end


def sample_size(population: int, share: float, minimum: int) -> int:
    if share <= 0 or population == 0:
        return 0
    return min(population, max(minimum, math.ceil(share * population)))


def score(seed_hash: str, search_id: int) -> str:
    return hashlib.sha256(f"{seed_hash}:{search_id}".encode()).hexdigest()


def choose(seed_hash: str, search_ids: list[int], k: int) -> list[int]:
    return sorted(sorted(search_ids, key=lambda i: (score(seed_hash, i), i))[:k])


def population_and_seed(ctx: AppContext, start: dt.datetime, end: dt.datetime) -> tuple[list[int], AuditRecord]:
    low, high = _ts(start), _ts(end)
    with ctx.db.read() as s:
        seed = s.execute(
            select(AuditRecord)
            .where(AuditRecord.action == "audit.checkpoint", AuditRecord.ts >= high)
            .order_by(AuditRecord.seq)
            .limit(1)
        ).scalar_one_or_none()
        if seed is None:
            raise SampleNotReadyError(
                f"no audit checkpoint since the period ended ({high}): take one (facetrail audit checkpoint) first"
            )
        s.expunge(seed)
        details = s.execute(
            select(AuditRecord.details).where(
                AuditRecord.action == "search",
                AuditRecord.outcome == "ok",
                AuditRecord.ts >= low,
                AuditRecord.ts < high,
                AuditRecord.seq < seed.seq,
            )
        ).scalars()
        ids = sorted({int(json.loads(d)["search_id"]) for d in details})
    return ids, seed


def draw_period(
    ctx: AppContext, label: str, start: dt.datetime, end: dt.datetime, rules: SamplingRules, *, actor: str
) -> dict[str, Any]:
    """Draw the sample of [start, end) once (a second draw of the same label returns the first)."""
    existing = _draw_by_label(ctx, label)
    if existing is not None:
        return existing
    ids, seed = population_and_seed(ctx, start, end)
    chosen = choose(seed.hash, ids, sample_size(len(ids), rules.share, rules.minimum))
    try:
        with ctx.db.transaction() as s:
            units = dict(
                s.execute(select(SearchRecord.id, SearchRecord.unit_id).where(SearchRecord.id.in_(chosen))).all()
            )
            draw = SampleDraw(
                period=label,
                period_start=start,
                period_end=end,
                seed_seq=seed.seq,
                seed_hash=seed.hash,
                checkpoint_seq=seed.seq,
                share=rules.share,
                population=len(ids),
                drawn_at=utcnow(),
                drawn_by=actor,
            )
            s.add(draw)
            s.flush()
            for search_id in chosen:
                s.add(SampleItem(draw_id=draw.id, search_id=search_id, unit_id=units.get(search_id), note=""))
            append_audit(
                s,
                actor=actor,
                action="oversight.sample.draw",
                target=f"sample:{label}",
                details={
                    "draw_id": draw.id,
                    "period": label,
                    "start": _ts(start),
                    "end": _ts(end),
                    "seed_seq": seed.seq,
                    "seed_hash": seed.hash,
                    "share": rules.share,
                    "minimum": rules.minimum,
                    "population": len(ids),
                    "search_ids": chosen,
                },
            )
            notify.queue_draw(ctx, s, draw, chosen)
    except IntegrityError:  # drawn by another process at the same moment
        pass
    result = _draw_by_label(ctx, label)
    assert result is not None
    return result


def draw_due(ctx: AppContext, *, actor: str, now: dt.datetime | None = None) -> dict[str, Any] | None:
    """Draw the last completed period of the policy's kind, if not drawn yet (the server's schedule)."""
    rules = active_policy(ctx).sampling
    if rules.share <= 0:
        return None
    moment = now or utcnow()
    current_start = period_of(rules.period, moment)[1]
    label, start, end = period_of(rules.period, current_start - dt.timedelta(seconds=1))
    return draw_period(ctx, label, start, end, rules, actor=actor)


def _draw_by_label(ctx: AppContext, label: str) -> dict[str, Any] | None:
    with ctx.db.read() as s:
        draw = s.execute(select(SampleDraw).where(SampleDraw.period == label)).scalar_one_or_none()
        if draw is None:
            return None
        items = s.execute(
            select(SampleItem).where(SampleItem.draw_id == draw.id).order_by(SampleItem.search_id)
        ).scalars()
        return {**draw_dict(draw), "search_ids": [i.search_id for i in items]}


def draw_dict(d: SampleDraw) -> dict[str, Any]:
    return {
        "id": d.id,
        "period": d.period,
        "start": _aware(d.period_start),
        "end": _aware(d.period_end),
        "seed_seq": d.seed_seq,
        "seed_hash": d.seed_hash,
        "share": d.share,
        "population": d.population,
        "drawn_at": _aware(d.drawn_at),
        "drawn_by": d.drawn_by,
    }


# ------------------------------------------------------------------ auditors' view and findings


def _require(ctx: AppContext, who: Principal, action: str, target: str) -> None:
    if not who.can(Permission.AUDIT_SAMPLE):
        with ctx.db.transaction() as s:
            append_audit(
                s,
                actor=who.actor,
                action=action,
                target=target,
                outcome="denied",
                details={"reason": f"role '{who.role}' may not {Permission.AUDIT_SAMPLE.value}", **who.audit_context()},
            )
        raise PermissionDeniedError(f"role '{who.role}' may not {Permission.AUDIT_SAMPLE.value}")


def list_sample_items(
    ctx: AppContext, who: Principal, *, pending_only: bool = False, limit: int = 500, item_id: int | None = None
) -> list[dict[str, Any]]:
    """Drawn searches with their metadata (never faces) and findings, newest draw first. Auditors only."""
    _require(ctx, who, "oversight.sample.list", "samples")
    query = (
        select(SampleItem, SampleDraw.period, SearchRecord, Unit.name)
        .join(SampleDraw, SampleDraw.id == SampleItem.draw_id)
        .outerjoin(SearchRecord, SearchRecord.id == SampleItem.search_id)
        .outerjoin(Unit, Unit.id == SearchRecord.unit_id)
    )
    if pending_only:
        query = query.where(SampleItem.verdict.is_(None))
    if item_id is not None:
        query = query.where(SampleItem.id == item_id)
    with ctx.db.read() as s:
        rows = s.execute(query.order_by(SampleDraw.id.desc(), SampleItem.search_id).limit(limit)).all()
        return [_item_dict(item, period, search, unit) for item, period, search, unit in rows]


def _item_dict(item: SampleItem, period: str, search: SearchRecord | None, unit: str | None) -> dict[str, Any]:
    return {
        "id": item.id,
        "period": period,
        "search_id": item.search_id,
        "search": None
        if search is None
        else {
            "created_at": _aware(search.created_at),
            "actor": search.actor,
            "unit": unit,
            "case_number": search.case_number,
            "offense": search.offense,
            "legal_basis": search.legal_basis,
            "justification": search.reason,
        },
        "verdict": item.verdict,
        "checks": item.checks,
        "note": item.note,
        "found_by": item.found_by,
        "found_at": _aware(item.found_at) if item.found_at else None,
    }


def record_finding(ctx: AppContext, who: Principal, item_id: int, checks: dict[str, bool], note: str) -> dict[str, Any]:
    """The auditor's finding on one drawn search: the three checks and a note; recorded once. Audited."""
    target = f"sample_item:{item_id}"
    _require(ctx, who, "oversight.sample.finding", target)
    note = note.strip()
    problem: FaceTrailError | None = None
    missing = [c for c in CHECKS if not isinstance(checks.get(c), bool)]
    if missing:
        problem = BadInputError(f"a finding answers every check: missing {missing}", field="checks")
    elif len(note) > MAX_NOTE:
        problem = BadInputError(f"the note is longer than {MAX_NOTE} characters", field="note")
    elif not all(checks[c] for c in CHECKS) and not note:
        problem = BadInputError("an inadequate finding needs a note saying what is wrong", field="note")
    with ctx.db.transaction() as s:
        item = s.get(SampleItem, item_id)
        if problem is None and item is None:
            problem = SampleItemNotFoundError(f"no sample item {item_id}", item_id=item_id)
        if problem is None and item is not None and item.verdict is not None:
            problem = ConflictError(f"sample item {item_id} already has a finding (by {item.found_by})")
        if problem is not None:
            append_audit(
                s,
                actor=who.actor,
                action="oversight.sample.finding",
                target=target,
                outcome="not_found" if isinstance(problem, NotFoundError) else "refused",
                details={"error": problem.to_dict(), **who.audit_context()},
            )
    if problem is not None:
        raise problem
    verdict = ADEQUATE if all(checks[c] for c in CHECKS) else INADEQUATE
    with ctx.db.transaction() as s:
        item = s.get(SampleItem, item_id)
        assert item is not None
        if item.verdict is not None:
            raise ConflictError(f"sample item {item_id} already has a finding")
        item.verdict, item.checks, item.note = verdict, {c: bool(checks[c]) for c in CHECKS}, note
        item.found_by, item.found_at = who.actor, utcnow()
        append_audit(
            s,
            actor=who.actor,
            action="oversight.sample.finding",
            target=target,
            details={
                "item_id": item_id,
                "search_id": item.search_id,
                "verdict": verdict,
                "checks": item.checks,
                "note": note,
                **who.audit_context(),
            },
        )
    return list_sample_items(ctx, who, item_id=item_id)[0]
