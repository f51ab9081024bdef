"""The examination method (docs/examination.md) through the core and the REST API, on SQLite and PostgreSQL:
system assignment, sequential unmasking (every response a reviewer can fetch before concluding lacks score,
rank, FMR, identity, case story and the other conclusion), the locked probe analysis, the FISWG checklist, the
conclusion scale and the release rule on it, known-answer tests (indistinguishable at the API) and proficiency.
Real photos through the real pipeline."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from index_helpers import create_gallery, enroll_photos
from sqlalchemy import select, update

from examination_helpers import (
    ALL_SIMILAR,
    DIFFERENT,
    NEUTRAL,
    QUALITY,
    SAME,
    World,
    conclude,
    examination_policy,
    handle_for,
    task_of,
)
from face_fixtures import BIDEN, FACEAPI, OBAMA, OBAMA2
from facetrail.accounts.service import create_api_token
from facetrail.cases import examinations
from facetrail.cases.searches import get_search, run_search
from facetrail.context import AppContext
from facetrail.examination.models import ExaminationTask, ExaminedCandidate, KnownAnswerTest
from facetrail.governance.policy import apply_policy, default_policy_text
from facetrail.governance.training import record_training
from facetrail.service.app import create_app
from facetrail.storage.models import SearchRecord
from factories import audits, make_unit, make_user, search_request

TODAY = dt.datetime.now(dt.UTC).date()
GALLERY = {
    "OBAMA": OBAMA,
    "BIDEN": BIDEN,
    "AMY": FACEAPI / "amy" / "amy1.png",
    "RAJ": FACEAPI / "raj" / "raj1.png",
}
# What a reviewer must not learn before concluding: keys and values (checked in every response body).
FORBIDDEN_KEYS = {
    "similarity",
    "estimated_fmr",
    "fmr",
    "rank",
    "score",
    "subject_external_id",
    "subject_id",
    "face_id",
    "justification",
    "offense",
    "case_number",
    "decision",
    "reviewer",
    "search_id",
}


@pytest.fixture
def world(ctx: AppContext) -> Iterator[World]:
    ctx.settings.server.similarity_floor = -1.0
    robbery = make_unit(ctx, "Robbery")
    users = {
        "inv": make_user(ctx, "ivan.inv", "investigator", robbery),
        "rita": make_user(ctx, "rita.rev", "reviewer", robbery),
        "rob": make_user(ctx, "rob.rev", "reviewer", robbery),
        "aud": make_user(ctx, "ada.aud", "auditor", None),
        "admin": make_user(ctx, "adam.admin", "administrator", None),
    }
    gallery_id = create_gallery(ctx, "bookings", ctx.pipeline.model_id)
    enroll_photos(ctx, ctx.pipeline, gallery_id, GALLERY)
    # a second photo of AMY: the gallery can supply mated known-answer pairs
    enroll_photos(ctx, ctx.pipeline, gallery_id, {"AMY-2": FACEAPI / "amy" / "amy2.png"})
    with ctx.db.transaction() as s:
        from facetrail.storage.models import Face, Subject

        amy = s.execute(select(Subject.id).where(Subject.external_id == "AMY")).scalar_one()
        amy2 = s.execute(select(Subject.id).where(Subject.external_id == "AMY-2")).scalar_one()
        s.execute(update(Face).where(Face.subject_id == amy2).values(subject_id=amy))
    examination_policy(ctx, known_answer_rate=0.0)
    record_training(ctx, "ivan.inv", TODAY - dt.timedelta(days=10), "FR-101", actor="user:adam.admin")
    tokens = {name: create_api_token(ctx, who, "test", scope="full")[1] for name, who in users.items()}
    with TestClient(create_app(ctx)) as client:
        yield World(ctx, users, client, tokens)


def _search(world: World) -> int:
    return run_search(world.ctx, world.users["inv"], OBAMA2.read_bytes(), search_request()).search_id


def _walk_keys(value: Any, found: set[str]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            if v is not None and v != [] and v != {}:
                found.add(k)
            _walk_keys(v, found)
    elif isinstance(value, list):
        for v in value:
            _walk_keys(v, found)


def _secrets_of(world: World, sid: int) -> list[str]:
    """Texts that would give away score, identity or the case story (in any response)."""
    with world.ctx.db.read() as s:
        record = s.get(SearchRecord, sid)
        assert record is not None
        out = [record.reason]
        for c in record.candidates:
            out += [str(c["subject_external_id"]), str(float(c["similarity"])), str(float(c["fmr"]))]
    return out


def test_the_method_end_to_end_with_release_on_the_scale(world: World) -> None:
    ctx, users = world.ctx, world.users
    sid = _search(world)
    queue = world.api("rita", "GET", "/examinations").json()
    assert len(queue) == 1 and queue[0]["status"] == "probe_analysis" and queue[0]["candidates_total"] is None
    task = queue[0]["task_id"]
    assert not task.isdigit() and audits(ctx, "examination.assign")[0]["actor"] == "system"
    assert {a["reviewer_id"] for a in audits(ctx, "examination.assign")} == {
        users["rita"].user_id,
        users["rob"].user_id,
    }
    # candidates wait for the probe analysis
    r = world.api("rita", "GET", f"/examinations/{task}/candidates")
    assert r.status_code == 409 and r.json()["error"]["code"] == "probe_analysis_required"
    assert world.api("rita", "GET", f"/examinations/{task}/probe/image").status_code in (200, 404)
    r = world.api("rita", "POST", f"/examinations/{task}/probe-analysis", json={"quality": QUALITY, "suitable": True})
    assert r.status_code == 200 and r.json()["status"] == "comparison" and r.json()["probe_analysis"]["locked"]
    listed = world.api("rita", "GET", f"/examinations/{task}/candidates").json()
    assert len(listed) == 4 and all(c["reveal"] is None for c in listed)
    handle = handle_for(ctx, task, 1)
    # the checklist: a dissimilarity must be explained; a conclusion needs a complete checklist
    bad = {"eyes": {"iris": {"mark": "dissimilar", "comment": ""}}}
    r = world.api("rita", "PUT", f"/examinations/{task}/candidates/{handle}/checklist", json={"marks": bad})
    assert r.status_code == 400 and "explained" in r.json()["error"]["message"]
    r = world.api(
        "rita",
        "PUT",
        f"/examinations/{task}/candidates/{handle}/checklist",
        json={"marks": {"eyes": {"iris": {"mark": "similar", "comment": ""}}}},
    )
    assert r.status_code == 200 and r.json()["seen_order"] == 1
    body = {"conclusion": SAME, "reasoning": "ears and nose agree", "limitations": "one probe"}
    r = world.api("rita", "POST", f"/examinations/{task}/candidates/{handle}/conclusion", json=body)
    assert r.status_code == 400 and r.json()["error"]["code"] == "checklist_incomplete"
    regions = [
        {
            "image": "probe",
            "component": "ears",
            "region": {"x": 0.1, "y": 0.2, "width": 0.1, "height": 0.2},
            "note": "lobe attached",
        }
    ]
    measures = [{"image": "both", "name": "inter-eye / face width", "value": 0.42, "unit": "ratio"}]
    r = world.api(
        "rita",
        "PUT",
        f"/examinations/{task}/candidates/{handle}/checklist",
        json={"marks": ALL_SIMILAR, "annotations": regions, "measurements": measures},
    )
    assert r.status_code == 200 and r.json()["checklist"]["unmarked"] == []
    r = world.api(
        "rita", "POST", f"/examinations/{task}/candidates/{handle}/conclusion", json={**body, "limitations": ""}
    )
    assert r.status_code == 422 or r.status_code == 400  # limitations are required
    r = world.api("rita", "POST", f"/examinations/{task}/candidates/{handle}/conclusion", json=body)
    assert r.status_code == 200, r.text
    reveal = r.json()["reveal"]
    assert reveal["rank"] == 1 and reveal["similarity"] is not None and reveal["estimated_fmr"] is not None
    assert "other_conclusion" not in reveal  # nothing of the other examiner until the whole task is complete
    # concluding twice is refused and audited
    r = world.api("rita", "POST", f"/examinations/{task}/candidates/{handle}/conclusion", json=body)
    assert r.status_code == 409 and r.json()["error"]["code"] == "conclusion_final"
    assert audits(ctx, "examination.conclude", "refused")
    # the second examiner: one conclusion at or above the level each releases the lead
    done = conclude(ctx, users["rob"], sid, 1, "moderate_support_same_source")
    assert "other_conclusion" not in done["reveal"]  # rob's task is still open
    assert len(audits(ctx, "lead.released")) == 1
    inv_view = get_search(ctx, users["inv"], sid)
    assert inv_view.candidates and inv_view.candidates[0].subject_external_id == "OBAMA"
    # rank 2: one at the level, one limited: a disagreement (to adjudication), not a lead
    conclude(ctx, users["rita"], sid, 2, SAME)
    conclude(ctx, users["rob"], sid, 2, "limited_support_same_source")
    assert [a["rank"] for a in audits(ctx, "review.disagreement")] == [2]
    # rank 3: both on the different-sources side: no lead, no disagreement
    conclude(ctx, users["rita"], sid, 3, DIFFERENT)
    conclude(ctx, users["rob"], sid, 3, NEUTRAL)
    assert len(audits(ctx, "review.disagreement")) == 1 and len(audits(ctx, "lead.released")) == 1
    # the task completes with the last candidate: only then the case story
    last = conclude(ctx, users["rita"], sid, 4, NEUTRAL)
    assert last["reveal"]["rank"] == 4
    assert last["reveal"]["other_conclusion"] == {"status": "pending", "conclusion": None}  # rob: not on rank 4
    first = world.api("rita", "GET", f"/examinations/{task}/candidates/{handle}").json()
    assert first["reveal"]["other_conclusion"] == {"status": "concluded", "conclusion": "moderate_support_same_source"}
    rita_task = world.api("rita", "GET", f"/examinations/{task}").json()
    assert rita_task["status"] == "complete" and rita_task["case"]["justification"] == search_request().justification
    assert rita_task["case"]["known_answer_test"] is False
    seen = world.api("rita", "GET", f"/examinations/{task}/candidates").json()
    assert sorted(c["seen_order"] for c in seen) == [1, 2, 3, 4]
    # the searcher's candidates: the released lead, the rest under review
    assert [c.subject_external_id for c in get_search(ctx, users["inv"], sid).candidates or []][1:] == [
        "under review"
    ] * 3


def test_release_level_is_the_policy_of_the_search(world: World) -> None:
    ctx, users = world.ctx, world.users
    examination_policy(ctx, known_answer_rate=0.0, release_level="strong_support_same_source")
    sid = _search(world)
    conclude(ctx, users["rita"], sid, 1, SAME)
    conclude(ctx, users["rob"], sid, 1, "moderate_support_same_source")
    assert not audits(ctx, "lead.released") and audits(ctx, "review.disagreement")
    # a policy applied later is not retroactive
    examination_policy(ctx, known_answer_rate=0.0, release_level="limited_support_same_source")
    assert not audits(ctx, "lead.released")


def test_nothing_before_the_conclusion_gives_score_rank_identity_story_or_the_other_conclusion(world: World) -> None:
    """Every response a reviewer can fetch before concluding on a candidate: the examination routes, the search
    view, the search history, the review list, the thumbnail by rank, the case packet."""
    ctx, users = world.ctx, world.users
    sid = _search(world)
    conclude(ctx, users["rob"], sid, 1, SAME, reasoning="scar on the left cheek")  # the other examiner first
    task = task_of(ctx, "rita.rev", sid)
    assert task is not None
    secrets = [*_secrets_of(world, sid), "scar on the left cheek", "rob.rev"]
    responses: list[Any] = [
        world.api("rita", "GET", "/examinations"),
        world.api("rita", "GET", f"/examinations/{task}"),
    ]
    responses.append(
        world.api("rita", "POST", f"/examinations/{task}/probe-analysis", json={"quality": QUALITY, "suitable": True})
    )
    listed = world.api("rita", "GET", f"/examinations/{task}/candidates")
    responses.append(listed)
    for c in listed.json():
        responses.append(world.api("rita", "GET", f"/examinations/{task}/candidates/{c['handle']}"))
        responses.append(
            world.api(
                "rita", "PUT", f"/examinations/{task}/candidates/{c['handle']}/checklist", json={"marks": ALL_SIMILAR}
            )
        )
    for path in (
        "/examinations/method",
        "/examinations/proficiency",
        f"/searches/{sid}",
        "/searches",
        f"/searches/{sid}/reviews",
        "/cases/2026-0042/packet?format=json",
    ):
        responses.append(world.api("rita", "GET", path))
    for r in responses:
        if r.status_code != 200:
            continue
        text = r.text
        for secret in secrets:
            assert secret not in text, (r.request.url, secret)
        url = str(r.request.url)
        if "/examinations" in url and not url.endswith(("/method", "/proficiency")):
            for secret in ("2026-0042", "robbery"):  # an examination tells not even the case or offense
                assert secret not in text, (url, secret)
            keys: set[str] = set()
            _walk_keys(r.json(), keys)
            assert not keys & FORBIDDEN_KEYS, (r.request.url, keys & FORBIDDEN_KEYS)
    # while her task is open the search is not hers to see at all ("not found", like an unknown search)
    assert world.api("rita", "GET", f"/searches/{sid}").status_code == 404
    for rank in (1, 2):
        r = world.api("rita", "GET", f"/searches/{sid}/candidates/{rank}/thumbnail")
        assert r.status_code == 404
    # after concluding on rank 1: still nothing of the other examiner, and still no search view
    handle = handle_for(ctx, task, 1)
    r = world.api(
        "rita",
        "POST",
        f"/examinations/{task}/candidates/{handle}/conclusion",
        json={"conclusion": NEUTRAL, "reasoning": "r", "limitations": "l"},
    )
    assert r.status_code == 200 and "other_conclusion" not in r.json()["reveal"]  # only once the task is complete
    assert world.api("rita", "GET", f"/searches/{sid}").status_code == 404
    # the whole task complete: the search view shows her candidates, the other conclusion nameless
    with ctx.db.read() as s_:
        ranks = list(
            s_.execute(
                select(ExaminedCandidate.rank)
                .join(ExaminationTask, ExaminationTask.id == ExaminedCandidate.task_id)
                .where(ExaminationTask.public_id == task, ExaminedCandidate.conclusion.is_(None))
            ).scalars()
        )
    for rank in ranks:
        conclude(ctx, users["rita"], sid, rank, NEUTRAL)
    view = world.api("rita", "GET", f"/searches/{sid}").json()
    assert 1 in [c["rank"] for c in view["candidates"]]
    first = next(c for c in view["candidates"] if c["rank"] == 1)
    assert {rv["reviewer"] for rv in first["reviews"]} == {"rita.rev", "another reviewer"}
    assert world.api("rita", "GET", f"/searches/{sid}/candidates/1/thumbnail").status_code == 200


def test_probe_analysis_locks_and_unsuitable_ends_the_task(world: World) -> None:
    ctx, users = world.ctx, world.users
    sid = _search(world)
    examinations.queue(ctx, users["rita"])
    task = task_of(ctx, "rita.rev", sid)
    assert task is not None
    r = world.api("rita", "POST", f"/examinations/{task}/probe-analysis", json={"quality": QUALITY, "suitable": False})
    assert r.status_code == 400  # "not suitable" must say why
    r = world.api(
        "rita",
        "POST",
        f"/examinations/{task}/probe-analysis",
        json={"quality": QUALITY, "suitable": False, "notes": "face turned away, motion blur"},
    )
    assert r.status_code == 200 and r.json()["status"] == "complete"
    r = world.api("rita", "POST", f"/examinations/{task}/probe-analysis", json={"quality": QUALITY, "suitable": True})
    assert r.status_code == 409 and r.json()["error"]["code"] == "probe_analysis_locked"
    assert audits(ctx, "examination.probe_analysis", "refused")
    listed = world.api("rita", "GET", f"/examinations/{task}/candidates").json()
    assert {c["conclusion"] for c in listed} == {"not_suitable"} and all(c["reveal"] for c in listed)


def test_known_answer_tests_are_indistinguishable_and_counted(world: World) -> None:
    ctx, users = world.ctx, world.users
    examination_policy(ctx, known_answer_rate=0.5)
    for _ in range(12):
        _search(world)
        examinations.queue(ctx, users["rita"])
        if any(t.known_answer_id for t in _tasks(ctx)):
            break
    kat_tasks = [t for t in _tasks(ctx) if t.known_answer_id is not None]
    assert kat_tasks, "no known-answer test was mixed in at rate 0.5 over 12 searches (p < 1e-7)"
    kat = kat_tasks[0]
    live = next(t for t in _tasks(ctx) if t.search_id is not None and t.reviewer_id == kat.reviewer_id)
    who = "rita" if kat.reviewer_id == users["rita"].user_id else "rob"

    def shapes(public_id: str) -> list[Any]:
        out = [world.api(who, "GET", f"/examinations/{public_id}").json()]
        out.append(
            world.api(
                who, "POST", f"/examinations/{public_id}/probe-analysis", json={"quality": QUALITY, "suitable": True}
            ).json()
        )
        listed = world.api(who, "GET", f"/examinations/{public_id}/candidates").json()
        out.append(listed)
        out.append(world.api(who, "GET", f"/examinations/{public_id}/candidates/{listed[0]['handle']}").json())
        assert world.api(who, "GET", f"/examinations/{public_id}/probe/image").status_code in (200, 404)
        return out

    def skeleton(value: Any) -> Any:
        """Keys and value types only (ids, handles and counts differ between any two tasks)."""
        if isinstance(value, dict):
            return {k: skeleton(v) for k, v in sorted(value.items())}
        if isinstance(value, list):
            return [skeleton(value[0])] if value else []
        return type(value).__name__

    assert [skeleton(x) for x in shapes(kat.public_id)] == [skeleton(x) for x in shapes(live.public_id)]
    queue = world.api(who, "GET", "/examinations").json()
    assert {skeleton(t)["task_id"] for t in queue} == {"str"} and len({len(t["task_id"]) for t in queue}) == 1
    # conclude every candidate of the known-answer test: the record counts it by level and truth
    with ctx.db.read() as s:
        answers = s.get(KnownAnswerTest, kat.known_answer_id).candidates  # type: ignore[union-attr]
    for c in answers:
        handle = handle_for(ctx, kat.public_id, int(c["rank"]))
        world.api(
            who, "PUT", f"/examinations/{kat.public_id}/candidates/{handle}/checklist", json={"marks": ALL_SIMILAR}
        )
        r = world.api(
            who,
            "POST",
            f"/examinations/{kat.public_id}/candidates/{handle}/conclusion",
            json={"conclusion": NEUTRAL if c["mated"] else DIFFERENT, "reasoning": "r", "limitations": "l"},
        )
        assert r.status_code == 200, r.text
    done = world.api(who, "GET", f"/examinations/{kat.public_id}").json()
    assert done["status"] == "complete" and done["case"]["known_answer_test"] is True
    mine = world.api(who, "GET", "/examinations/proficiency").json()
    assert len(mine) == 1 and mine[0]["comparisons"] == len(answers) and mine[0]["errors"] == 0
    assert mine[0]["non_mated"][DIFFERENT] == sum(1 for c in answers if not c["mated"])
    other = "rob" if who == "rita" else "rita"
    r = world.api(other, "GET", "/examinations/proficiency", params={"reviewer": users[who].username})
    assert r.status_code == 403
    for supervisor in ("aud", "admin"):
        everyone = world.api(supervisor, "GET", "/examinations/proficiency").json()
        assert {e["reviewer"] for e in everyone} == {"rita.rev", "rob.rev"}
    assert world.api("inv", "GET", "/examinations/proficiency").status_code == 403
    # no release ledger entry for a test: nothing in candidate_reviews, no lead
    assert not audits(ctx, "lead.released")


def _tasks(ctx: AppContext) -> list[ExaminationTask]:
    with ctx.db.read() as s:
        rows = list(s.execute(select(ExaminationTask).order_by(ExaminationTask.id)).scalars())
        for r in rows:
            s.expunge(r)
        return rows


def test_the_approver_and_the_adjudicators_are_assigned_last(world: World) -> None:
    """Who read the case story (the reviewer who approved the search request) or must stay independent (a named
    adjudicator) is not drawn while other reviewers are free."""
    from facetrail.governance.models import SearchApproval

    ctx, users = world.ctx, world.users
    make_user(ctx, "tess.rev", "reviewer", users["rita"].unit_id)
    make_user(ctx, "adam.adj", "reviewer", users["rita"].unit_id)
    text = default_policy_text().replace("similarity_floor = 0.30", "similarity_floor = -1.0")
    text = text.replace("adjudicators = []", 'adjudicators = ["adam.adj"]').replace(
        "known_answer_rate = 0.1", "known_answer_rate = 0.0"
    )
    apply_policy(ctx, text, actor="user:adam.admin")
    for _ in range(5):  # the draw is random: repeat it
        sid = _search(world)
        with ctx.db.transaction() as s:
            s.add(
                SearchApproval(
                    kind="prior",
                    status="approved",
                    requester_id=users["inv"].user_id,
                    unit_id=users["inv"].unit_id,
                    gallery_name="bookings",
                    case_number="2026-0042",
                    offense="robbery",
                    legal_basis="warrant",
                    justification="j",
                    candidates=4,
                    probe_sha256="0" * 64,
                    search_id=sid,
                    decided_by_id=users["rita"].user_id,
                    decided_at=dt.datetime.now(dt.UTC),
                )
            )
        examinations.assign_pending(ctx, users["rita"].unit_id)
        assert task_of(ctx, "rob.rev", sid) and task_of(ctx, "tess.rev", sid)
        assert task_of(ctx, "rita.rev", sid) is None and task_of(ctx, "adam.adj", sid) is None


def test_concurrent_assigners_never_open_a_third_task(world: World) -> None:
    """Two queue calls at once used to be able to open a third examiner task on PostgreSQL (both counted one free
    place before either inserted); the search's row lock makes count and insert one step."""
    import threading

    from facetrail.storage.models import User

    ctx, users = world.ctx, world.users
    with ctx.db.transaction() as s:  # set-up: only rita can be drawn when the search is made
        s.execute(update(User).where(User.username == "rob.rev").values(disabled=True))
    sid = _search(world)
    with ctx.db.read() as s:
        record = s.get(SearchRecord, sid)
        assert record is not None
        s.expunge(record)
    examinations.assign_examiners(ctx, record)
    assert [t.reviewer_id for t in _tasks(ctx) if t.search_id == sid] == [users["rita"].user_id]
    with ctx.db.transaction() as s:
        s.execute(update(User).where(User.username == "rob.rev").values(disabled=False))
    for name in ("tess.rev", "tom.rev", "tia.rev", "ted.rev"):
        make_user(ctx, name, "reviewer", users["rita"].unit_id)
    start = threading.Barrier(4)
    errors: list[BaseException] = []

    def assign() -> None:
        start.wait()
        try:
            examinations.assign_examiners(ctx, record)
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=assign) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    tasks = [t for t in _tasks(ctx) if t.search_id == sid]
    assert len(tasks) == 2 and len({t.reviewer_id for t in tasks}) == 2
    assert len([a for a in audits(ctx, "examination.assign") if a["target"] == f"search:{sid}"]) == 2
