"""Oversight figures for the transparency report: counts only, never a name (of a user, unit or case)."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from facetrail.oversight.models import Alert, SampleDraw, SampleItem


def alert_counts(session: Session, low: dt.datetime, high: dt.datetime) -> list[list[Any]]:
    """Alerts raised in the period by rule: raised, acknowledged (so far)."""
    rows = session.execute(
        select(Alert.rule, Alert.acknowledged_at).where(Alert.created_at >= low, Alert.created_at < high)
    ).all()
    raised = Counter(rule for rule, _ in rows)
    acked = Counter(rule for rule, at in rows if at is not None)
    return [[rule, raised[rule], acked[rule]] for rule in sorted(raised)]


def sample_counts(session: Session, low: dt.datetime, high: dt.datetime) -> list[list[Any]]:
    """Audit samples of periods ending in the report's period: draws, searches drawn, findings by verdict."""
    draws = list(
        session.execute(
            select(SampleDraw.id).where(SampleDraw.period_end > low, SampleDraw.period_end <= high)
        ).scalars()
    )
    verdicts = Counter(
        v or "not yet checked"
        for v in session.execute(select(SampleItem.verdict).where(SampleItem.draw_id.in_(draws))).scalars()
    )
    return [
        ["draws", len(draws)],
        ["searches drawn", sum(verdicts.values())],
        ["found adequate", verdicts.get("adequate", 0)],
        ["found inadequate", verdicts.get("inadequate", 0)],
        ["not yet checked", verdicts.get("not yet checked", 0)],
    ]
