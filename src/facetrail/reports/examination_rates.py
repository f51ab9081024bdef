"""The transparency report's examination figures (issue 15): how often the two examiners of a candidate
disagreed, how often a conclusion was neutral (inconclusive) or "not suitable", how often a probe was found not
suitable for comparison, and how many searches produced no lead.

Counts only, by unit of the search; known-answer tests (which are not searches) are left out. A disagreement is
two examiners' conclusions on one candidate on different sides of the scale (examination.scale.side: support for
the same source, neutral, support for different sources) or one "not suitable" beside a conclusion on the scale.
Rates are shares of the counts beside them, as percentages with one decimal; "—" where there is nothing to divide.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from facetrail.examination.models import ExaminationTask, ExaminedCandidate, ProbeAnalysisRecord
from facetrail.examination.scale import Conclusion, side
from facetrail.storage.models import SearchRecord, Unit

NO_UNIT = "(no unit: command line)"


def rate(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:.1f}%" if whole else "—"


def examination_rows(session: Session, low: dt.datetime, high: dt.datetime) -> list[list[Any]]:
    """Per unit: conclusions, neutral, not suitable, candidates with two conclusions, disagreements, probe
    analyses, probes not suitable; with the rates."""
    units = {u.id: u.name for u in session.execute(select(Unit)).scalars()}
    searches = {
        r.id: (units.get(r.unit_id, NO_UNIT) if r.unit_id is not None else NO_UNIT)
        for r in session.execute(
            select(SearchRecord.id, SearchRecord.unit_id).where(
                SearchRecord.created_at >= low, SearchRecord.created_at < high
            )
        )
    }
    if not searches:
        return []
    tasks = {
        t.id: t.search_id
        for t in session.execute(
            select(ExaminationTask.id, ExaminationTask.search_id).where(ExaminationTask.search_id.in_(list(searches)))
        )
    }
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    by_candidate: dict[tuple[int, int], list[str]] = defaultdict(list)
    if tasks:
        for task_id, face_id, conclusion in session.execute(
            select(ExaminedCandidate.task_id, ExaminedCandidate.face_id, ExaminedCandidate.conclusion).where(
                ExaminedCandidate.task_id.in_(list(tasks)), ExaminedCandidate.conclusion.is_not(None)
            )
        ):
            search_id = tasks[task_id]
            unit = searches[search_id]
            counts[unit]["conclusions"] += 1
            counts[unit]["neutral"] += int(conclusion == Conclusion.NEUTRAL.value)
            counts[unit]["not_suitable"] += int(conclusion == Conclusion.NOT_SUITABLE.value)
            by_candidate[(search_id, face_id)].append(str(conclusion))
        for task_id, suitable in session.execute(
            select(ProbeAnalysisRecord.task_id, ProbeAnalysisRecord.suitable).where(
                ProbeAnalysisRecord.task_id.in_(list(tasks))
            )
        ):
            unit = searches[tasks[task_id]]
            counts[unit]["analyses"] += 1
            counts[unit]["probe_not_suitable"] += int(not suitable)
    for (search_id, _face), conclusions in by_candidate.items():
        if len(conclusions) < 2:
            continue
        unit = searches[search_id]
        counts[unit]["pairs"] += 1
        counts[unit]["disagreements"] += int(len({side(c) for c in conclusions}) > 1)
    rows = []
    for unit in sorted(counts):
        c = counts[unit]
        rows.append(
            [
                unit,
                c["conclusions"],
                c["neutral"],
                rate(c["neutral"], c["conclusions"]),
                c["not_suitable"],
                rate(c["not_suitable"], c["conclusions"]),
                c["pairs"],
                c["disagreements"],
                rate(c["disagreements"], c["pairs"]),
                c["analyses"],
                c["probe_not_suitable"],
                rate(c["probe_not_suitable"], c["analyses"]),
            ]
        )
    return rows


COLUMNS = [
    "unit",
    "conclusions",
    "neutral_inconclusive",
    "neutral_rate",
    "not_suitable",
    "not_suitable_rate",
    "candidates_with_two_conclusions",
    "disagreements",
    "disagreement_rate",
    "probe_analyses",
    "probes_not_suitable",
    "probe_not_suitable_rate",
]
HEADING = "Examination conclusions: disagreement, inconclusive and not-suitable rates"
TEXT = (
    "Each search's candidates are examined by two reviewers assigned by the system, each concluding on a "
    "symmetric scale (strong, moderate or limited support for the same source; neutral; limited, moderate or "
    "strong support for different sources) or 'not suitable'. Counted here, by the unit of the search: the "
    "conclusions recorded, how many were neutral (inconclusive) or not suitable, the candidates both examiners "
    "concluded on and how many of those got conclusions on different sides of the scale (a disagreement, which "
    "is never settled by a third vote), and the probe analyses that found the probe not suitable for comparison. "
    "Known-answer proficiency tests are not counted."
)
NO_LEAD_TEXT = (
    "Searches of the period that produced no released lead, whatever the reason: no candidate above the "
    "similarity floor, every candidate concluded against or neutral, the examiners disagreed, or the probe was "
    "not suitable. A face search that produces no lead is an outcome to report, not a failure to hide."
)
