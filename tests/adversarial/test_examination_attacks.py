"""Insider attacks on the examination method (docs/examination.md), each performed for real and each must fail:

- a reviewer picks the verifier, or learns who the other examiner is;
- a reviewer reads the score, rank, FMR, identity, case story or the other conclusion before concluding, through
  any door: the examination routes out of order, the search view and history, thumbnails by rank, the review
  list, the case packet, the audit log, the transparency report, another reviewer's proficiency;
- a reviewer changes a locked probe analysis, concludes twice, edits the checklist behind a conclusion, skips
  the checklist or leaves a dissimilarity unexplained;
- a reviewer tells a known-answer test from live work, or reaches a task that is not theirs;
- the searcher examines their own search; a third reviewer out-votes the panel.

Storage-level attacks run on SQLite and PostgreSQL (the REST app in process); the rest against a real server.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import backends
import pytest
from fastapi.testclient import TestClient
from gov_world import GovWorld, conclude_as, examiners, task_id
from sqlalchemy import select, update

from examination_helpers import (
    ALL_SIMILAR,
    DIFFERENT,
    NEUTRAL,
    QUALITY,
    SAME,
    World,
    examination_policy,
    handle_for,
    task_of,
)
from face_fixtures import BIDEN, FACEAPI, OBAMA, OBAMA2
from facetrail.accounts.service import create_api_token
from facetrail.cases import examinations
from facetrail.cases.searches import run_search
from facetrail.context import AppContext
from facetrail.examination.models import ExaminationTask, KnownAnswerTest
from facetrail.governance.training import record_training
from facetrail.policy.principal import Principal
from facetrail.service.app import create_app
from facetrail.storage.models import Face, SearchRecord, Subject
from factories import make_unit, make_user, search_request

backend_ctx = backends.backend_ctx  # the fixture: SQLite and PostgreSQL
on_both = pytest.mark.parametrize("backend_ctx", backends.BACKENDS, indirect=True)


@pytest.fixture
def world(backend_ctx: AppContext) -> Iterator[World]:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "storage"))  # the enrolment helpers
    from index_helpers import create_gallery, enroll_photos

    ctx = backend_ctx
    ctx.settings.mfa.required_roles = []  # these attacks are about the method; step-up has its own tests
    ctx.settings.server.similarity_floor = -1.0
    unit = make_unit(ctx, "Robbery")
    users = {
        "inv": make_user(ctx, "ivan.inv", "investigator", unit),
        "rita": make_user(ctx, "rita.rev", "reviewer", unit),
        "rob": make_user(ctx, "rob.rev", "reviewer", unit),
        "aud": make_user(ctx, "ada.aud", "auditor", None),
    }
    gallery_id = create_gallery(ctx, "bookings", ctx.pipeline.model_id)
    enroll_photos(
        ctx,
        ctx.pipeline,
        gallery_id,
        {"OBAMA": OBAMA, "BIDEN": BIDEN, "AMY": FACEAPI / "amy" / "amy1.png", "RAJ": FACEAPI / "raj" / "raj1.png"},
    )
    enroll_photos(ctx, ctx.pipeline, gallery_id, {"AMY-2": FACEAPI / "amy" / "amy2.png"})
    with ctx.db.transaction() as s:  # AMY has two photos: mated known-answer pairs are possible
        amy = s.execute(select(Subject.id).where(Subject.external_id == "AMY")).scalar_one()
        amy2 = s.execute(select(Subject.id).where(Subject.external_id == "AMY-2")).scalar_one()
        s.execute(update(Face).where(Face.subject_id == amy2).values(subject_id=amy))
    examination_policy(ctx, known_answer_rate=0.0)
    record_training(ctx, "ivan.inv", dt.date.today() - dt.timedelta(days=3), "FR-101", actor="user:adam.admin")
    tokens = {name: create_api_token(ctx, who, "test", scope="full")[1] for name, who in users.items()}
    with TestClient(create_app(ctx)) as client:
        yield World(ctx, users, client, tokens)


def _search(world: World) -> int:
    return run_search(world.ctx, world.users["inv"], OBAMA2.read_bytes(), search_request()).search_id


def _task(world: World, who: str, sid: int) -> str:
    assert world.api(who, "GET", "/examinations").status_code == 200
    task = task_of(world.ctx, world.users[who].user_id or 0, sid)
    assert task is not None
    return task


@on_both
def test_a_reviewer_cannot_pick_the_verifier_nor_learn_who_it_is(world: World) -> None:
    sid = _search(world)
    # there is no way to name a reviewer: no route takes one, and the queue assigns by the system's draw
    for method, path, body in (
        ("POST", "/examinations", {"search_id": sid, "reviewer": "rob.rev"}),
        ("PUT", f"/examinations/{_task(world, 'rita', sid)}", {"reviewer": "rob.rev"}),
    ):
        assert world.api("rita", method, path, json=body).status_code in (404, 405)
    assigned = [a for a in _audits(world.ctx, "examination.assign") if a["details"].get("search_id") == sid]
    assert {a["actor"] for a in assigned} == {"system"} and len(assigned) == 2
    task = _task(world, "rita", sid)
    world.api("rita", "POST", f"/examinations/{task}/probe-analysis", json={"quality": QUALITY, "suitable": True})
    from examination_helpers import conclude

    conclude(world.ctx, world.users["rob"], sid, 1, SAME, reasoning="rob's reasoning")
    handle = handle_for(world.ctx, task, 1)
    world.api("rita", "PUT", f"/examinations/{task}/candidates/{handle}/checklist", json={"marks": ALL_SIMILAR})
    r = world.api(
        "rita",
        "POST",
        f"/examinations/{task}/candidates/{handle}/conclusion",
        json={"conclusion": SAME, "reasoning": "r", "limitations": "l"},
    )
    assert r.status_code == 200 and "other_conclusion" not in r.json()["reveal"]  # rita's task is still open
    for path in (
        f"/examinations/{task}",
        f"/examinations/{task}/candidates",
        f"/searches/{sid}",
        f"/searches/{sid}/reviews",
    ):
        assert "rob.rev" not in world.api("rita", "GET", path).text, path


@on_both
def test_no_door_shows_scores_before_the_conclusion(world: World) -> None:
    sid = _search(world)
    task = _task(world, "rita", sid)
    with world.ctx.db.read() as s:
        record = s.get(SearchRecord, sid)
        assert record is not None
        names = [str(c["subject_external_id"]) for c in record.candidates]
        scores = [str(float(c["similarity"])) for c in record.candidates]
        case_number, reason = record.case_number, record.reason
    # out of order: candidates (and any guessed handle) before the probe analysis
    assert world.api("rita", "GET", f"/examinations/{task}/candidates").status_code == 409
    assert world.api("rita", "GET", f"/examinations/{task}/candidates/AAAAAAAAAAAA").status_code == 409
    assert world.api("rita", "GET", f"/examinations/{task}/candidates/AAAAAAAAAAAA/photos/0").status_code == 409
    world.api("rita", "POST", f"/examinations/{task}/probe-analysis", json={"quality": QUALITY, "suitable": True})
    doors = [
        ("GET", f"/searches/{sid}"),
        ("GET", "/searches"),
        ("GET", f"/searches?case_number={case_number}"),
        ("GET", f"/searches/{sid}/reviews"),
        ("GET", f"/cases/{case_number}/packet?format=json"),
        ("GET", "/examinations"),
        ("GET", f"/examinations/{task}"),
        ("GET", f"/examinations/{task}/candidates"),
    ]
    doors += [
        ("GET", f"/examinations/{task}/candidates/{c['handle']}")
        for c in world.api("rita", "GET", f"/examinations/{task}/candidates").json()
    ]
    for method, path in doors:
        r = world.api("rita", method, path)
        if path.startswith(f"/searches/{sid}"):  # her task is open: the search is not hers to see at all
            assert r.status_code == 404, (path, r.text)
        else:
            assert r.status_code == 200, (path, r.text)
        for secret in (*names, *scores, reason, "robbery"):
            assert secret not in r.text, (path, secret)
    for rank in range(1, len(names) + 1):  # a face by rank would tell the rank
        assert world.api("rita", "GET", f"/searches/{sid}/candidates/{rank}/thumbnail").status_code == 404
    for path in (
        "/audit/records",
        "/reports/transparency?from=2026-01-01&to=2026-12-31",
        "/examinations/proficiency?reviewer=rob.rev",
    ):
        assert world.api("rita", "GET", path).status_code == 403, path


@on_both
def test_locked_analysis_double_conclusion_and_a_final_checklist(world: World) -> None:
    sid = _search(world)
    task = _task(world, "rita", sid)
    base = f"/examinations/{task}"
    assert (
        world.api("rita", "POST", f"{base}/probe-analysis", json={"quality": QUALITY, "suitable": True}).status_code
        == 200
    )
    r = world.api("rita", "POST", f"{base}/probe-analysis", json={"quality": QUALITY, "suitable": False, "notes": "x"})
    assert r.status_code == 409 and r.json()["error"]["code"] == "probe_analysis_locked"
    handle = handle_for(world.ctx, task, 1)
    body = {"conclusion": DIFFERENT, "reasoning": "nose differs", "limitations": "low light"}
    r = world.api("rita", "POST", f"{base}/candidates/{handle}/conclusion", json=body)
    assert r.status_code == 400  # never opened, no checklist
    unexplained = {**ALL_SIMILAR, "nose": {**ALL_SIMILAR["nose"], "tip": {"mark": "dissimilar", "comment": ""}}}
    r = world.api("rita", "PUT", f"{base}/candidates/{handle}/checklist", json={"marks": unexplained})
    assert r.status_code == 400
    explained = {**ALL_SIMILAR, "nose": {**ALL_SIMILAR["nose"], "tip": {"mark": "dissimilar", "comment": "bulbous"}}}
    assert (
        world.api("rita", "PUT", f"{base}/candidates/{handle}/checklist", json={"marks": explained}).status_code == 200
    )
    assert world.api("rita", "POST", f"{base}/candidates/{handle}/conclusion", json=body).status_code == 200
    r = world.api("rita", "POST", f"{base}/candidates/{handle}/conclusion", json={**body, "conclusion": SAME})
    assert r.status_code == 409 and r.json()["error"]["code"] == "conclusion_final"
    r = world.api("rita", "PUT", f"{base}/candidates/{handle}/checklist", json={"marks": ALL_SIMILAR})
    assert r.status_code == 409 and r.json()["error"]["code"] == "conclusion_final"
    assert (
        world.api("rita", "GET", f"{base}/candidates/{handle}").json()["checklist"]["marks"]["nose"]["tip"]["mark"]
        == "dissimilar"
    )
    refused = {(a["action"], a["outcome"]) for a in _audits(world.ctx) if a["outcome"] != "ok"}
    assert {
        ("examination.probe_analysis", "refused"),
        ("examination.conclude", "refused"),
        ("examination.checklist", "refused"),
    } <= refused
    # another reviewer's task is "not found" for rob, like a task that does not exist
    assert world.api("rob", "GET", base).status_code == 404
    assert world.api("rob", "POST", f"{base}/candidates/{handle}/conclusion", json=body).status_code == 404


@on_both
def test_a_known_answer_test_cannot_be_told_from_live_work(world: World) -> None:
    ctx = world.ctx
    sid = _search(world)
    task = _task(world, "rita", sid)  # rita's live task
    kat = examinations.mix_known_answer_test(ctx, world.users["rita"].user_id or 0, _record(ctx, sid))
    assert kat is not None
    queue = world.api("rita", "GET", "/examinations").json()
    assert {t["task_id"] for t in queue} == {task, kat}
    by_id = {t["task_id"]: t for t in queue}
    assert by_id[task].keys() == by_id[kat].keys()
    assert {k: v for k, v in by_id[task].items() if k not in ("task_id", "probe_image_url")} == {
        k: v for k, v in by_id[kat].items() if k not in ("task_id", "probe_image_url")
    }
    for t in (task, kat):
        r = world.api("rita", "POST", f"/examinations/{t}/probe-analysis", json={"quality": QUALITY, "suitable": True})
        assert r.status_code == 200
        assert r.json()["case"] is None and r.json()["status"] == "comparison"
        image = world.api("rita", "GET", f"/examinations/{t}/probe/image")
        assert image.status_code in (200, 404)
        listed = world.api("rita", "GET", f"/examinations/{t}/candidates").json()
        assert all(set(c) == set(listed[0]) and c["reveal"] is None for c in listed)
        opened = world.api("rita", "GET", f"/examinations/{t}/candidates/{listed[0]['handle']}").json()
        assert opened["reveal"] is None and [set(p) for p in opened["photos"]] == [{"index", "capture_date"}] * len(
            opened["photos"]
        )
        assert (
            world.api("rita", "GET", f"/examinations/{t}/candidates/{listed[0]['handle']}/photos/0").status_code == 200
        )
    # nothing in the search doors either: a known-answer test is no search at all
    # (her live search is not listed either while her task on it is open: the history counts neither)
    assert world.api("rita", "GET", "/searches").json()["total"] == 0
    with ctx.db.read() as s:
        assert s.execute(select(KnownAnswerTest)).scalars().first() is not None
        assert {t.search_id is None for t in s.execute(select(ExaminationTask)).scalars()} == {True, False}


@on_both
def test_searcher_never_examines_own_search_and_a_third_reviewer_has_no_vote(world: World) -> None:
    ctx = world.ctx
    sid = _search(world)
    _task(world, "rita", sid)  # the system fills both places (rita and rob: the unit's only reviewers)
    third = make_user(ctx, "tess.rev", "reviewer", world.users["rita"].unit_id)
    world.tokens["tess"] = create_api_token(ctx, third, "t", scope="full")[1]
    examinations.assign_pending(ctx, third.unit_id)
    assert task_of(ctx, "tess.rev", sid) is None  # the two places were taken
    assert world.api("tess", "GET", "/examinations").json() == [] or all(
        t["task_id"] not in (task_of(ctx, "rita.rev", sid), task_of(ctx, "rob.rev", sid))
        for t in world.api("tess", "GET", "/examinations").json()
    )
    other = task_of(ctx, "rita.rev", sid)
    assert world.api("tess", "GET", f"/examinations/{other}").status_code == 404
    assert world.api("inv", "GET", "/examinations").status_code == 403  # the searcher (investigator)
    with ctx.db.transaction() as s:  # ... even promoted to reviewer: never assigned their own search
        from facetrail.storage.models import User

        s.execute(update(User).where(User.id == world.users["inv"].user_id).values(role="reviewer"))
    promoted = Principal(**{**world.users["inv"].__dict__, "role": "reviewer"})
    assert all(t["task_id"] != other for t in examinations.queue(ctx, promoted))
    assert task_of(ctx, "ivan.inv", sid) is None


def _record(ctx: AppContext, sid: int) -> SearchRecord:
    with ctx.db.read() as s:
        record = s.get(SearchRecord, sid)
        assert record is not None
        s.expunge(record)
        return record


def _audits(ctx: AppContext, action: str | None = None) -> list[dict[str, Any]]:
    from facetrail.storage.models import AuditRecord

    with ctx.db.read() as s:
        query = select(AuditRecord)
        if action:
            query = query.where(AuditRecord.action == action)
        return [
            {"action": r.action, "actor": r.actor, "outcome": r.outcome, "details": json.loads(r.details)}
            for r in s.execute(query.order_by(AuditRecord.seq)).scalars()
        ]


# ------------------------------------------------------------------ against a real server


def test_on_a_real_server_the_panel_is_blind_and_final(gov_world: GovWorld) -> None:
    r = gov_world.search(case_number="2026-0890")
    assert r.status_code == 201, r.text
    search_id = int(r.json()["search_id"])
    first, second = examiners(gov_world, search_id)
    assert conclude_as(gov_world, first, search_id, 1, "limited_support_same_source").status_code == 200
    with gov_world.client(second) as blind:
        assert blind.get(f"/api/v1/searches/{search_id}").status_code == 404  # her task is open: not found
        assert blind.get(f"/api/v1/searches/{search_id}/candidates/1/thumbnail").status_code == 404
    r = conclude_as(gov_world, second, search_id, 1, SAME)
    assert r.status_code == 200, r.text
    with gov_world.client(second) as reviewer:  # the other conclusion: only once the whole task is complete
        status = reviewer.get(f"/api/v1/examinations/{task_id(gov_world, second, search_id)}").json()["status"]
    if status == "complete":
        assert r.json()["reveal"]["other_conclusion"]["conclusion"] == "limited_support_same_source"
    else:
        assert "other_conclusion" not in r.json()["reveal"]
    # limited support is below the default release level: a disagreement, never a lead
    with gov_world.client("inv") as investigator:
        shown = investigator.get(f"/api/v1/searches/{search_id}").json()["candidates"]
    assert shown[0]["subject_external_id"] == "under review"
    assert [a for a in gov_world.audit(action="review.disagreement") if a["target"] == f"search:{search_id}"]
    task = task_id(gov_world, second, search_id)
    with gov_world.client(second) as reviewer:
        handle = r.json()["handle"]
        again = reviewer.post(
            f"/api/v1/examinations/{task}/candidates/{handle}/conclusion",
            json={"conclusion": NEUTRAL, "reasoning": "changed my mind", "limitations": "none"},
        )
    assert again.status_code == 409 and again.json()["error"]["code"] == "conclusion_final"
