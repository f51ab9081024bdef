"""Search limits (policy ``[limits]``): searches per user per day and per week, per case, and search hours.

Days and weeks (Monday-Sunday) are calendar periods in the policy's time zone; the per-case limit counts every
user's searches for the case number, whatever its letter case ("ab-7" and "AB-7" are one case). Only searches
that ran count (refused attempts do not). A search beyond a limit is refused ('search_limit_exceeded' /
'outside_search_hours') or, when the policy says on_exceed = "approval", needs a reviewer's prior approval
('approval_required': submit it as a search request; the approved run is not counted against the limit
again). The refusal is audited by the search path's gate.

The count and the search are not one transaction: two searches racing at the limit can both pass. The limit
is a brake on volume, not an exact quota; anomaly alerts see the volume regardless.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass

from sqlalchemy import func, or_, select

from facetrail.context import AppContext
from facetrail.errors import FaceTrailError
from facetrail.governance.approvals import ApprovalRequiredError
from facetrail.governance.oversight_rules import LimitRules, parse_hours, within_hours
from facetrail.oversight.cases import normalise_case_number
from facetrail.policy.principal import Principal
from facetrail.storage.models import SearchRecord


class SearchLimitError(FaceTrailError):
    code = "search_limit_exceeded"
    http_status = 429
    exit_code = 6


class OutsideSearchHoursError(FaceTrailError):
    code = "outside_search_hours"
    http_status = 403
    exit_code = 6


@dataclass(frozen=True)
class Usage:
    today: int
    this_week: int
    this_case: int


def period_starts(now: dt.datetime, zone: str) -> tuple[dt.datetime, dt.datetime]:
    """The start (UTC) of the calendar day and of the week (Monday) containing ``now`` in ``zone``."""
    local = now.astimezone(zoneinfo.ZoneInfo(zone))
    day = local.replace(hour=0, minute=0, second=0, microsecond=0)
    week = day - dt.timedelta(days=local.weekday())
    return day.astimezone(dt.UTC), week.astimezone(dt.UTC)


def usage(ctx: AppContext, user_id: int | None, case_number: str, rules: LimitRules, now: dt.datetime) -> Usage:
    day, week = period_starts(now, rules.timezone)
    raw = case_number.strip()[:100]
    with ctx.db.read() as s:
        today, this_week = s.execute(
            select(func.count().filter(SearchRecord.created_at >= day), func.count()).where(
                SearchRecord.user_id == user_id, SearchRecord.created_at >= min(day, week)
            )
        ).one()
        this_case = s.execute(
            select(func.count()).where(
                or_(
                    SearchRecord.case_number == raw,
                    # "ab-7", "AB-7" and "Ab-7" are one case to the limit: a change of letter case (or
                    # spaces around it) must not buy a fresh allowance. Stored numbers are compared upper-cased.
                    func.upper(func.trim(SearchRecord.case_number)) == normalise_case_number(raw),
                )
            )
        ).scalar_one()
    return Usage(int(today), int(this_week), int(this_case))


def check_limits(ctx: AppContext, who: Principal, case_number: str, rules: LimitRules, now: dt.datetime) -> None:
    """Raise if this search would go beyond a limit of the policy (see the module docstring)."""
    if not rules.any:
        return
    problems: list[tuple[str, int, int]] = []
    hours = parse_hours(rules.hours)
    outside = not within_hours(now.astimezone(zoneinfo.ZoneInfo(rules.timezone)), hours)
    if rules.per_user_per_day or rules.per_user_per_week or rules.per_case:
        used = usage(ctx, who.user_id, case_number, rules, now)
        for name, limit, count in (
            ("per_user_per_day", rules.per_user_per_day, used.today),
            ("per_user_per_week", rules.per_user_per_week, used.this_week),
            ("per_case", rules.per_case, used.this_case),
        ):
            if limit and count >= limit:
                problems.append((name, limit, count))
    if not problems and not outside:
        return
    details: dict[str, object] = {
        "limits": [{"limit": n, "allowed": lim, "used": c} for n, lim, c in problems],
        "outside_hours": outside,
        "hours": rules.hours,
        "timezone": rules.timezone,
    }
    what = "; ".join(f"{n} limit of {lim} reached ({c} searches)" for n, lim, c in problems)
    if outside:
        what = "; ".join(x for x in (what, f"outside the search hours {rules.hours} ({rules.timezone})") if x)
    if rules.on_exceed == "approval":
        raise ApprovalRequiredError(
            f"the policy requires a reviewer's prior approval beyond its limits ({what}): "
            "submit it as a search request",
            reason="limit",
            **details,
        )
    if problems:
        raise SearchLimitError(f"search refused by the policy's limits: {what}", **details)
    raise OutsideSearchHoursError(f"search refused: {what}", **details)
