"""What the search view, search history and case packets may tell an examiner (sequential unmasking).

Guaranteed: a reviewer who is examining a search (an examination task of theirs that is not complete) — or who
may still be assigned to it (it lacks examiners) — is told neither its case story (case number, offense,
justification) nor anything about its candidates beyond what the examination itself shows. Candidates in the
search view are governed by governance.release (a reviewer sees only those they have concluded on).

A search on which the caller has an open examination task is left out of their search history and search view
altogether (``open_task_excluded``: "not found", like an unknown search) until that task is complete: listed with
its story withheld, it could be counted against the caller's queue, telling how many of their tasks are live and
how many are known-answer tests (which have no search).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import exists, select

from facetrail.context import AppContext
from facetrail.examination.models import ExaminationTask
from facetrail.policy.principal import Principal
from facetrail.policy.roles import Permission

EXAMINERS = 2
WITHHELD = "withheld until your examination of this search is complete"


def examination_state(ctx: AppContext, search_ids: list[int]) -> dict[int, dict[int, bool]]:
    """search id -> reviewer id -> whether their task on it is complete."""
    if not search_ids:
        return {}
    with ctx.db.read() as s:
        rows = s.execute(
            select(ExaminationTask.search_id, ExaminationTask.reviewer_id, ExaminationTask.completed_at).where(
                ExaminationTask.search_id.in_(search_ids)
            )
        ).all()
    out: dict[int, dict[int, bool]] = {}
    for search_id, reviewer_id, completed in rows:
        if search_id is None:
            continue
        out.setdefault(int(search_id), {})[int(reviewer_id)] = completed is not None
    return out


def story_withheld(who: Principal, state: dict[int, bool]) -> bool:
    """Whether the case story of a search with this examination ``state`` is withheld from the caller: from a
    reviewer whose own task on it is open, or who may yet be assigned (the search lacks examiners)."""
    if not who.can(Permission.REVIEW_DECIDE) or who.can(Permission.SEARCH_VIEW_OWN):
        return False
    mine = state.get(who.user_id if who.user_id is not None else -1)
    if mine is not None:
        return not mine
    return len(state) < EXAMINERS


def open_task_excluded(who: Principal, search_id_column: Any) -> Any | None:
    """A SQL condition leaving out the searches on which the caller (a reviewer) has an open examination task;
    None for callers who examine nothing."""
    if not who.can(Permission.REVIEW_DECIDE) or who.can(Permission.SEARCH_VIEW_OWN) or who.user_id is None:
        return None
    return ~exists(
        select(ExaminationTask.id).where(
            ExaminationTask.search_id == search_id_column,
            ExaminationTask.reviewer_id == who.user_id,
            ExaminationTask.completed_at.is_(None),
        )
    )
