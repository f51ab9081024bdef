"""Anomaly alerts: patterns of searching that the oversight layer puts in front of supervisors and auditors.

Rules (thresholds in the policy's ``[alerts]``; each looks at the user's searches in the last window_days):
- peer_volume: the user's searches against their unit's investigators: above median + k x MAD (scaled MAD,
  at least 1) and at least peer_min_searches;
- single_search_cases: many distinct case numbers that each got exactly one search;
- probe_reused_across_cases: the same probe image (SHA-256) searched under several case numbers;
- repeated_justification: the same justification text (case, spacing and punctuation ignored) for several cases;
- unusual_hours: searches outside the usual hours;
- no_lead_repeats: one case searched again and again with none of its searches leading to a possible lead.

Each alert is written once per (rule, user, subject) — the subject is the day for window rules, the probe, the
text or the case otherwise — as an audit record 'oversight.alert' (actor 'system:oversight', the rule and its
figures) in the same transaction as its row and its queued e-mails. Detection is incremental (one user's
recent searches) and runs after each search on a background worker, and for everyone on the server's schedule
(``facetrail oversight scan``); it never slows or breaks a search.

Who sees alerts: the unit's reviewers (their unit's) and auditors (all); never investigators or administrators.
Acknowledging needs a note and is audited ('oversight.alert.ack'); nobody acknowledges an alert about themself.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import queue
import re
import statistics
import threading
import time
import zoneinfo
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from facetrail.audit.log import append_audit
from facetrail.context import AppContext
from facetrail.errors import BadInputError, NotFoundError, PermissionDeniedError
from facetrail.examination.scale import RELEASE_LEVELS
from facetrail.governance.oversight_rules import AlertRules, parse_hours, within_hours
from facetrail.governance.policy import active_policy
from facetrail.oversight import notify
from facetrail.oversight.cases import normalise_case_number
from facetrail.oversight.models import Alert
from facetrail.policy.principal import Principal
from facetrail.policy.roles import Permission
from facetrail.storage.models import AuditRecord, CandidateReview, SearchRecord, Unit, User, utcnow

log = logging.getLogger(__name__)
SYSTEM_ACTOR = "system:oversight"
MAX_NOTE = 5000
MAD_SCALE = 1.4826  # MAD x this estimates the standard deviation of normally distributed counts


class AlertRule(StrEnum):
    PEER_VOLUME = "peer_volume"
    SINGLE_SEARCH_CASES = "single_search_cases"
    PROBE_REUSED = "probe_reused_across_cases"
    REPEATED_JUSTIFICATION = "repeated_justification"
    UNUSUAL_HOURS = "unusual_hours"
    NO_LEAD_REPEATS = "no_lead_repeats"


class AlertNotFoundError(NotFoundError):
    code = "alert_not_found"


class AlertAcknowledgedError(BadInputError):
    code = "alert_already_acknowledged"


def now_of(ctx: AppContext) -> dt.datetime:
    """The oversight clock: ``ctx.extras['clock']`` when a test injects one, else the real time (UTC)."""
    clock: Callable[[], dt.datetime] | None = ctx.extras.get("clock")
    return clock() if clock else utcnow()


def aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _short(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def normalise_text(text: str) -> str:
    return re.sub(r"[\W_]+", " ", text.casefold()).strip()


@dataclass(frozen=True)
class Finding:
    rule: AlertRule
    subject: str  # what makes this alert distinct from others of its rule for the user
    figures: dict[str, Any]


@dataclass(frozen=True)
class _Search:
    id: int
    created_at: dt.datetime
    case_number: str
    probe_sha256: str
    reason: str


# ------------------------------------------------------------------ the rules


def _peer_volume(
    ctx: AppContext, user: User, mine: int, since: dt.datetime, rules: AlertRules, day: str
) -> list[Finding]:
    if not rules.peer_mad_factor or mine < max(rules.peer_min_searches, 1):
        return []
    with ctx.db.read() as s:
        peers = [
            u
            for u in s.execute(
                select(User.id).where(
                    User.unit_id == user.unit_id,
                    User.role == "investigator",
                    User.id != user.id,
                    User.disabled.is_(False),
                )
            ).scalars()
        ]
        counts = dict(
            s.execute(
                select(SearchRecord.user_id, func.count())
                .where(SearchRecord.created_at >= since, SearchRecord.user_id.in_(peers))
                .group_by(SearchRecord.user_id)
            ).all()
        )
    values = [counts.get(p, 0) for p in peers] or [0]
    median = statistics.median(values)
    mad = statistics.median(abs(v - median) for v in values)
    threshold = median + rules.peer_mad_factor * max(MAD_SCALE * mad, 1.0)
    if mine <= threshold:
        return []
    figures = {
        "searches": mine,
        "peers": len(peers),
        "peer_median": median,
        "peer_mad": mad,
        "threshold": round(threshold, 2),
        "window_days": rules.window_days,
    }
    return [Finding(AlertRule.PEER_VOLUME, day, figures)]


def _rules_on_searches(rows: list[_Search], no_lead_ids: set[int], rules: AlertRules, day: str) -> list[Finding]:
    found: list[Finding] = []
    window = {"window_days": rules.window_days}
    per_case = Counter(r.case_number for r in rows)
    singles = sum(1 for n in per_case.values() if n == 1)
    if rules.single_search_cases and singles >= rules.single_search_cases:
        found.append(
            Finding(
                AlertRule.SINGLE_SEARCH_CASES,
                day,
                {"cases_with_one_search": singles, "cases": len(per_case), "searches": len(rows), **window},
            )
        )
    cases_by_probe: dict[str, set[str]] = defaultdict(set)
    cases_by_text: dict[str, set[str]] = defaultdict(set)
    for r in rows:
        cases_by_probe[r.probe_sha256].add(r.case_number)
        text = normalise_text(r.reason)
        if text:
            cases_by_text[text].add(r.case_number)
    if rules.probe_cases:
        for sha, cases in cases_by_probe.items():
            if len(cases) >= rules.probe_cases:
                figures = {"probe_sha256": sha, "cases": len(cases), "case_numbers": sorted(cases)[:20], **window}
                found.append(Finding(AlertRule.PROBE_REUSED, sha, figures))
    if rules.repeated_justification:
        for text, cases in cases_by_text.items():
            if len(cases) >= rules.repeated_justification:
                figures = {"text_sha256": _short(text), "cases": len(cases), "excerpt": text[:80], **window}
                found.append(Finding(AlertRule.REPEATED_JUSTIFICATION, _short(text), figures))
    hours = parse_hours(rules.usual_hours)
    zone = zoneinfo.ZoneInfo(rules.timezone)
    odd = [r for r in rows if not within_hours(r.created_at.astimezone(zone), hours)]
    if rules.unusual_hour_searches and len(odd) >= rules.unusual_hour_searches:
        figures = {
            "searches_outside_usual_hours": len(odd),
            "usual_hours": rules.usual_hours,
            "timezone": rules.timezone,
            **window,
        }
        found.append(Finding(AlertRule.UNUSUAL_HOURS, day, figures))
    if rules.no_lead_searches:
        fruitless = Counter(r.case_number for r in rows if r.id in no_lead_ids)
        for case, n in fruitless.items():
            if n >= rules.no_lead_searches and n == per_case[case]:
                figures = {"case_number": case, "searches_without_lead": n, **window}
                found.append(Finding(AlertRule.NO_LEAD_REPEATS, _short(case), figures))
    return found


def evaluate_user(ctx: AppContext, user_id: int, now: dt.datetime) -> list[Finding]:
    """Every rule's findings for one user at ``now`` (nothing written)."""
    rules = active_policy(ctx).alerts
    since = now - dt.timedelta(days=rules.window_days)
    with ctx.db.read() as s:
        user = s.get(User, user_id)
        if user is None:
            return []
        s.expunge(user)
        rows = [
            _Search(r.id, aware(r.created_at), normalise_case_number(r.case_number), r.probe_sha256, r.reason)
            for r in s.execute(
                select(
                    SearchRecord.id,
                    SearchRecord.created_at,
                    SearchRecord.case_number,
                    SearchRecord.probe_sha256,
                    SearchRecord.reason,
                ).where(
                    SearchRecord.user_id == user_id, SearchRecord.created_at >= since, SearchRecord.created_at <= now
                )
            ).all()
        ]
        ids = [r.id for r in rows]
        with_lead = set(
            s.execute(
                select(CandidateReview.search_id).where(
                    CandidateReview.search_id.in_(ids),
                    CandidateReview.decision.in_(RELEASE_LEVELS),  # any support for the same source
                )
            ).scalars()
        )
    if not rows:
        return []
    day = now.date().isoformat()
    no_lead = {i for i in ids if i not in with_lead}
    return [*_peer_volume(ctx, user, len(rows), since, rules, day), *_rules_on_searches(rows, no_lead, rules, day)]


# ------------------------------------------------------------------ raising alerts


def _dedup_key(rule: AlertRule, user_id: int, subject: str) -> str:
    return f"{rule.value}:{user_id}:{subject}"[:300]


def raise_alerts(ctx: AppContext, user_id: int, findings: list[Finding], now: dt.datetime) -> list[int]:
    """Record the findings not alerted before; returns the new alerts' ids."""
    created: list[int] = []
    if not findings:
        return created
    with ctx.db.read() as s:
        keys = [_dedup_key(f.rule, user_id, f.subject) for f in findings]
        seen = set(s.execute(select(Alert.dedup_key).where(Alert.dedup_key.in_(keys))).scalars())
        user = s.get(User, user_id)
        username = user.username if user else str(user_id)
        unit_id = user.unit_id if user else None
        unit = s.get(Unit, unit_id) if unit_id is not None else None
        unit_name = unit.name if unit else None
    for finding, key in zip(findings, keys, strict=True):
        if key in seen:
            continue
        try:
            with ctx.db.transaction() as s:
                row = Alert(
                    rule=finding.rule.value,
                    dedup_key=key,
                    user_id=user_id,
                    unit_id=unit_id,
                    figures=finding.figures,
                    created_at=now,
                    audit_seq=0,
                    ack_note="",
                )
                s.add(row)
                s.flush()
                record = append_audit(
                    s,
                    actor=SYSTEM_ACTOR,
                    action="oversight.alert",
                    target=f"user:{username}",
                    details={
                        "alert_id": row.id,
                        "rule": finding.rule.value,
                        "user_id": user_id,
                        "unit": unit_name,
                        "figures": finding.figures,
                        "at": now.isoformat(timespec="seconds"),
                    },
                )
                row.audit_seq = record.seq
                notify.queue_alert(ctx, s, row, username, unit_name)
                created.append(row.id)
        except IntegrityError:  # another worker raised the same alert at the same moment
            continue
    return created


def detect_for_user(ctx: AppContext, user_id: int, now: dt.datetime | None = None) -> list[int]:
    moment = now or now_of(ctx)
    return raise_alerts(ctx, user_id, evaluate_user(ctx, user_id, moment), moment)


def scan(ctx: AppContext, now: dt.datetime | None = None) -> list[int]:
    """Every user who searched in the window (the scheduled run; ``facetrail oversight scan``)."""
    moment = now or now_of(ctx)
    since = moment - dt.timedelta(days=active_policy(ctx).alerts.window_days)
    with ctx.db.read() as s:
        users = sorted(
            {
                u
                for u in s.execute(select(SearchRecord.user_id).where(SearchRecord.created_at >= since)).scalars()
                if u is not None
            }
        )
    created: list[int] = []
    for user_id in users:
        created += detect_for_user(ctx, user_id, moment)
    return created


# ------------------------------------------------------------------ after each search, off the request


class DetectionWorker:
    """One background thread per process: after-search detection jobs, coalesced per user (a burst of searches
    by one user is evaluated once, at the latest moment submitted)."""

    def __init__(self) -> None:
        self._queue: queue.Queue[tuple[str, int]] = queue.Queue()
        self._pending: dict[tuple[str, int], tuple[AppContext, dt.datetime]] = {}
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._busy = 0

    def submit(self, ctx: AppContext, user_id: int, now: dt.datetime) -> None:
        key = (ctx.db.url, user_id)
        with self._lock:
            queued = self._pending.get(key)
            self._pending[key] = (ctx, max(now, queued[1]) if queued else now)
            if queued:
                return
            self._busy += 1
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="facetrail-oversight", daemon=True)
                self._thread.start()
        self._queue.put(key)

    def _run(self) -> None:
        while True:
            key = self._queue.get()
            with self._lock:
                ctx, now = self._pending.pop(key)
            try:
                detect_for_user(ctx, key[1], now)
                notify.kick(ctx)
            except Exception:
                log.exception("oversight detection failed for user %s", key[1])
            finally:
                with self._lock:
                    self._busy -= 1

    def wait_idle(self, timeout: float = 60.0) -> bool:
        """For tests and shutdown: wait until every submitted job has run."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if self._busy == 0:
                    return True
            time.sleep(0.02)
        return False


WORKER = DetectionWorker()


# ------------------------------------------------------------------ reading and acknowledging


def _scope_query(who: Principal) -> Any:
    query = (
        select(Alert, User.username, Unit.name)
        .outerjoin(User, User.id == Alert.user_id)
        .outerjoin(Unit, Unit.id == Alert.unit_id)
    )
    if who.can(Permission.OVERSIGHT_VIEW_ALL):
        return query
    if who.can(Permission.OVERSIGHT_VIEW_UNIT) and who.unit_id is not None:
        return query.where(Alert.unit_id == who.unit_id)
    return None


def alert_dict(row: Alert, username: str | None, unit: str | None) -> dict[str, Any]:
    return {
        "id": row.id,
        "rule": row.rule,
        "user_id": row.user_id,
        "user": username,
        "unit": unit,
        "figures": row.figures,
        "created_at": aware(row.created_at),
        "audit_seq": row.audit_seq,
        "acknowledged": row.acknowledged_at is not None,
        "acknowledged_at": aware(row.acknowledged_at) if row.acknowledged_at else None,
        "acknowledged_by": row.acknowledged_by,
        "ack_note": row.ack_note,
    }


def _deny(ctx: AppContext, who: Principal, action: str, target: str, reason: str) -> PermissionDeniedError:
    with ctx.db.transaction() as s:
        append_audit(
            s,
            actor=who.actor,
            action=action,
            target=target,
            outcome="denied",
            details={"reason": reason, **who.audit_context()},
        )
    return PermissionDeniedError(reason)


def list_alerts(ctx: AppContext, who: Principal, *, open_only: bool = False, limit: int = 200) -> list[dict[str, Any]]:
    """Alerts in the caller's scope, newest first."""
    query = _scope_query(who)
    if query is None:
        raise _deny(ctx, who, "oversight.alerts", "alerts", f"role '{who.role}' may not see oversight alerts")
    if open_only:
        query = query.where(Alert.acknowledged_at.is_(None))
    with ctx.db.read() as s:
        rows = s.execute(query.order_by(Alert.id.desc()).limit(max(1, min(limit, 1000)))).all()
        return [alert_dict(a, name, unit) for a, name, unit in rows]


def get_alert(ctx: AppContext, who: Principal, alert_id: int) -> dict[str, Any]:
    query = _scope_query(who)
    if query is None:
        raise _deny(ctx, who, "oversight.alert.view", f"alert:{alert_id}", f"role '{who.role}' may not see alerts")
    with ctx.db.read() as s:
        row = s.execute(query.where(Alert.id == alert_id)).first()
        if row is not None:
            return alert_dict(*row)
    raise AlertNotFoundError(f"no alert {alert_id}", alert_id=alert_id)


def acknowledge(ctx: AppContext, who: Principal, alert_id: int, note: str) -> dict[str, Any]:
    """Mark an alert in the caller's scope as looked into, with a note (required). Audited."""
    target = f"alert:{alert_id}"
    if not who.can(Permission.OVERSIGHT_ACK):
        raise _deny(ctx, who, "oversight.alert.ack", target, f"role '{who.role}' may not acknowledge alerts")
    note = note.strip()
    try:
        current = get_alert(ctx, who, alert_id)  # not in scope: not found
    except AlertNotFoundError as exc:
        with ctx.db.transaction() as s:
            append_audit(
                s,
                actor=who.actor,
                action="oversight.alert.ack",
                target=target,
                outcome="not_found",
                details={"error": exc.to_dict(), **who.audit_context()},
            )
        raise
    problem: BadInputError | PermissionDeniedError | None = None
    if not note:
        problem = BadInputError("acknowledging an alert needs a note saying what was found or done", field="note")
    elif len(note) > MAX_NOTE:
        problem = BadInputError(f"the note is longer than {MAX_NOTE} characters", field="note")
    elif current["acknowledged"]:
        problem = AlertAcknowledgedError(f"alert {alert_id} was acknowledged already by {current['acknowledged_by']}")
    elif current["user_id"] is not None and current["user_id"] == who.user_id:
        problem = PermissionDeniedError("nobody acknowledges an alert about themself")
    if problem is not None:
        with ctx.db.transaction() as s:
            append_audit(
                s,
                actor=who.actor,
                action="oversight.alert.ack",
                target=target,
                outcome="denied" if isinstance(problem, PermissionDeniedError) else "refused",
                details={"error": problem.to_dict(), **who.audit_context()},
            )
        raise problem
    with ctx.db.transaction() as s:
        row = s.get(Alert, alert_id)
        assert row is not None
        if row.acknowledged_at is not None:
            raise AlertAcknowledgedError(f"alert {alert_id} was acknowledged already")
        row.acknowledged_at, row.acknowledged_by, row.ack_note = utcnow(), who.actor, note
        append_audit(
            s,
            actor=who.actor,
            action="oversight.alert.ack",
            target=target,
            details={"alert_id": alert_id, "rule": row.rule, "note": note, **who.audit_context()},
        )
    return get_alert(ctx, who, alert_id)


def missing_from_table(ctx: AppContext, who: Principal) -> list[int]:
    """Alerts the audit chain records but the alerts table no longer holds (a database administrator deleted
    them to hide them from the Oversight page): their ids, for auditors. The chain is the evidence."""
    if not who.can(Permission.OVERSIGHT_VIEW_ALL):
        return []
    with ctx.db.read() as s:
        recorded = {
            int(json.loads(d).get("alert_id", 0))
            for d in s.execute(select(AuditRecord.details).where(AuditRecord.action == "oversight.alert")).scalars()
        }
        present = set(s.execute(select(Alert.id)).scalars())
    return sorted(recorded - present - {0})
