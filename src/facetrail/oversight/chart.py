"""The per-user timeline on the Oversight page: searches per day over the last weeks, alerts marked; a PNG
rendered on the server (matplotlib's Agg backend, no script in the page). Who may see it: the user's unit's
reviewers and auditors; viewing it is audited ('oversight.timeline')."""

from __future__ import annotations

import datetime as dt
import io
from collections import Counter

from matplotlib.figure import Figure
from sqlalchemy import select

from facetrail.audit.log import append_audit
from facetrail.context import AppContext
from facetrail.errors import PermissionDeniedError
from facetrail.oversight.alerts import AlertNotFoundError, aware, now_of
from facetrail.oversight.models import Alert
from facetrail.policy.principal import Principal
from facetrail.policy.roles import Permission
from facetrail.storage.models import SearchRecord, User

DAYS = 28


def timeline_png(ctx: AppContext, who: Principal, user_id: int, days: int = DAYS) -> bytes:
    target = f"user:{user_id}"
    with ctx.db.read() as s:
        user = s.get(User, user_id)
        unit_id = user.unit_id if user else None
        username = user.username if user else ""
    in_scope = who.can(Permission.OVERSIGHT_VIEW_ALL) or (
        who.can(Permission.OVERSIGHT_VIEW_UNIT) and who.unit_id is not None and who.unit_id == unit_id
    )
    if user is None or not in_scope:
        outcome = (
            "denied"
            if not (who.can(Permission.OVERSIGHT_VIEW_ALL) or who.can(Permission.OVERSIGHT_VIEW_UNIT))
            else "not_found"
        )
        with ctx.db.transaction() as s:
            append_audit(
                s,
                actor=who.actor,
                action="oversight.timeline",
                target=target,
                outcome=outcome,
                details=who.audit_context(),
            )
        if outcome == "denied":
            raise PermissionDeniedError(f"role '{who.role}' may not see oversight timelines")
        raise AlertNotFoundError(f"no user {user_id} in your scope")
    end = now_of(ctx)
    first = (end - dt.timedelta(days=days - 1)).date()
    since = dt.datetime.combine(first, dt.time(), tzinfo=dt.UTC)
    with ctx.db.transaction() as s:
        stamps = s.execute(
            select(SearchRecord.created_at).where(SearchRecord.user_id == user_id, SearchRecord.created_at >= since)
        ).scalars()
        per_day = Counter(aware(t).date() for t in stamps)
        alert_days = Counter(
            aware(t).date()
            for t in s.execute(
                select(Alert.created_at).where(Alert.user_id == user_id, Alert.created_at >= since)
            ).scalars()
        )
        append_audit(
            s,
            actor=who.actor,
            action="oversight.timeline",
            target=target,
            details={"days": days, **who.audit_context()},
        )
    dates = [first + dt.timedelta(days=i) for i in range(days)]
    counts = [per_day.get(d, 0) for d in dates]
    fig = Figure(figsize=(7.5, 2.4), dpi=100)
    ax = fig.add_subplot()
    ax.bar(range(days), counts, color="#34607f", label="searches per day")
    flagged = [i for i, d in enumerate(dates) if alert_days.get(d)]
    if flagged:
        top = max([*counts, 1])
        ax.scatter(flagged, [top * 1.08] * len(flagged), marker="v", color="#b3261e", label="alert raised", zorder=3)
    ax.set_xticks(range(0, days, 7), labels=[dates[i].isoformat() for i in range(0, days, 7)], fontsize=8)
    ax.set_ylabel("searches")
    ax.set_title(f"{username}: searches per day, last {days} days (UTC)", loc="left", fontsize=10)
    ax.spines[["top", "right"]].set_visible(False)
    ax.set_ylim(0, max([*counts, 1]) * 1.2)
    ax.legend(loc="upper left", fontsize=8, frameon=False)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()
