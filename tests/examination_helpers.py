"""Test helpers for the examination method (docs/examination.md): walk a reviewer through it — probe analysis,
open the candidate, a complete FISWG checklist, the conclusion — in one call, through the core or over HTTP.

The helpers look up which candidate handle stands for a rank, and which reviewers the system assigned, straight
in the database: tests know the answer key; the API never tells a reviewer.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from facetrail.cases import examinations
from facetrail.context import AppContext
from facetrail.examination import fiswg
from facetrail.examination.models import ExaminationTask, ExaminedCandidate
from facetrail.governance.policy import apply_policy, default_policy_text
from facetrail.policy.principal import Principal
from facetrail.storage.models import User


@dataclass
class World:
    """An in-process API over a real database, with users and their API tokens (tests/storage and
    tests/adversarial build it the same way)."""

    ctx: AppContext
    users: dict[str, Principal]
    client: TestClient
    tokens: dict[str, str]

    def api(self, who: str, method: str, path: str, **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.tokens[who]}"}
        return self.client.request(method, f"/api/v1{path}", headers=headers, **kwargs)


def examination_policy(ctx: AppContext, **examination: Any) -> None:
    """Apply the default policy with the similarity floor off and these ``[examination]`` keys set."""
    text = default_policy_text().replace("similarity_floor = 0.30", "similarity_floor = -1.0")
    for key, value in examination.items():
        text = re.sub(rf"^{key} = .*$", f"{key} = {json.dumps(value)}", text, flags=re.M)
    apply_policy(ctx, text, actor="user:adam.admin")


SAME = "strong_support_same_source"  # what "possible lead" was
DIFFERENT = "strong_support_different_sources"  # what "not a match" was
NEUTRAL = "neutral"  # what "inconclusive" was
QUALITY = {factor: {"rating": "good", "comment": ""} for factor in fiswg.QUALITY_FACTORS}
ALL_SIMILAR = {
    component: {ch: {"mark": "similar", "comment": ""} for ch in chars}
    for component, (_label, chars) in fiswg.COMPONENTS.items()
}


def task_of(ctx: AppContext, reviewer: str | int, search_id: int) -> str | None:
    """The public id of the reviewer's task on the search (None: not assigned)."""
    with ctx.db.read() as s:
        uid = (
            reviewer
            if isinstance(reviewer, int)
            else s.execute(select(User.id).where(User.username == reviewer)).scalar_one()
        )
        return s.execute(
            select(ExaminationTask.public_id).where(
                ExaminationTask.search_id == search_id, ExaminationTask.reviewer_id == uid
            )
        ).scalar_one_or_none()


def examiners_of(ctx: AppContext, search_id: int) -> list[str]:
    """Usernames of the reviewers the system assigned to the search (assigning them first if needed)."""
    from facetrail.storage.models import SearchRecord

    with ctx.db.read() as s:
        record = s.get(SearchRecord, search_id)
        assert record is not None
        s.expunge(record)
    examinations.assign_examiners(ctx, record)
    with ctx.db.read() as s:
        return sorted(
            s.execute(
                select(User.username)
                .join(ExaminationTask, ExaminationTask.reviewer_id == User.id)
                .where(ExaminationTask.search_id == search_id)
            ).scalars()
        )


def handle_for(ctx: AppContext, task_id: str, rank: int) -> str:
    with ctx.db.read() as s:
        return s.execute(
            select(ExaminedCandidate.handle)
            .join(ExaminationTask, ExaminationTask.id == ExaminedCandidate.task_id)
            .where(ExaminationTask.public_id == task_id, ExaminedCandidate.rank == rank)
        ).scalar_one()


def conclude(
    ctx: AppContext,
    who: Principal,
    search_id: int,
    rank: int,
    conclusion: str,
    reasoning: str = "compared feature by feature",
    limitations: str = "single frontal probe",
) -> dict[str, Any]:
    """The whole method for one candidate through the core: the reviewer must be one of the assigned examiners."""
    examinations.queue(ctx, who)
    task_id = task_of(ctx, who.user_id or 0, search_id)
    assert task_id is not None, f"{who.username} is not an examiner of search {search_id}"
    if examinations.get_task_quiet(ctx, who, task_id)["probe_analysis"] is None:
        examinations.record_probe_analysis(ctx, who, task_id, QUALITY, True, "")
    handle = handle_for(ctx, task_id, rank)
    examinations.open_candidate(ctx, who, task_id, handle)
    examinations.save_checklist(ctx, who, task_id, handle, ALL_SIMILAR)
    return examinations.record_conclusion(ctx, who, task_id, handle, conclusion, reasoning, limitations)


def conclude_over_api(
    client: Any,
    ctx: AppContext,
    reviewer: str,
    search_id: int,
    rank: int,
    conclusion: str,
    reasoning: str = "compared feature by feature",
    limitations: str = "single frontal probe",
    prefix: str = "/api/v1",
) -> Any:
    """The whole method for one candidate over HTTP (``client``: an httpx/TestClient of the reviewer); the last
    response (the conclusion's) is returned."""
    r = client.get(f"{prefix}/examinations")
    assert r.status_code == 200, r.text
    task_id = task_of(ctx, reviewer, search_id)
    assert task_id is not None, f"{reviewer} is not an examiner of search {search_id}"
    base = f"{prefix}/examinations/{task_id}"
    if client.get(base).json()["probe_analysis"] is None:
        r = client.post(f"{base}/probe-analysis", json={"quality": QUALITY, "suitable": True})
        assert r.status_code == 200, r.text
    handle = handle_for(ctx, task_id, rank)
    assert client.get(f"{base}/candidates/{handle}").status_code == 200
    r = client.put(f"{base}/candidates/{handle}/checklist", json={"marks": ALL_SIMILAR})
    assert r.status_code == 200, r.text
    return client.post(
        f"{base}/candidates/{handle}/conclusion",
        json={"conclusion": conclusion, "reasoning": reasoning, "limitations": limitations},
    )


@contextmanager
def server_db(data_dir: Path) -> Iterator[AppContext]:
    """A context on a live server's database (SQLite in its data folder), to read the answer key."""
    from facetrail.config import Settings
    from facetrail.context import open_context

    ctx = open_context(Settings(data_dir=data_dir))  # type: ignore[call-arg]
    try:
        yield ctx
    finally:
        ctx.close()


def conclude_on_server(
    data_dir: Path, username: str, search_id: int, rank: int, conclusion: str, reasoning: str = "compared"
) -> dict[str, Any]:
    """The whole method for one candidate through the core, on a live server's database, as the local operator
    acting for ``username`` (no second factor asked: for tests about other pages; the examination pages have
    their own browser test)."""
    from facetrail.accounts.service import principal_for

    with server_db(data_dir) as ctx:
        with ctx.db.read() as s:
            user = s.execute(select(User).where(User.username == username)).scalar_one()
            s.refresh(user, ["unit"])
            who = principal_for(user, "cli")
        return conclude(ctx, who, search_id, rank, conclusion, reasoning)
