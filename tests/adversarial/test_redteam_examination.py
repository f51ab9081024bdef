"""Red team on the examination method (docs/examination.md), as insiders: each attack is performed for real and
must fail.

- A known-answer test's probe is an enrolled photo: the mate's photos must not include it (the identical bytes
  would tell both that the task is a test and which candidate is the mate).
- An examiner links a task to its search by the probe: the probe's SHA-256 (or its face) in the search history,
  the search view or the case packet would map the task to the search (its searcher, date, case) and tell a
  live task from a known-answer test (whose probe matches no search).
- An examiner whose task is still open downloads the lead report of a lead released on their search: the report
  carries the case story (case number, offense) that is withheld until the whole task is complete.
"""

from __future__ import annotations

import datetime as dt
import hashlib

import backends
import pytest
from sqlalchemy import select
from test_examination_attacks import World, _audits, _record, _search, _task, world  # noqa: F401 (the fixture)

from examination_helpers import ALL_SIMILAR, QUALITY, SAME, conclude, handle_for
from facetrail.cases import examinations
from facetrail.examination.models import KnownAnswerTest
from facetrail.storage.models import SearchRecord

backend_ctx = backends.backend_ctx
on_both = pytest.mark.parametrize("backend_ctx", backends.BACKENDS, indirect=True)


def _mated_known_answer_task(w: World, reviewer: str, sid: int) -> str:
    """A known-answer task for ``reviewer`` whose candidates include the probe's mate (the draw is random)."""
    for _ in range(40):
        task = examinations.mix_known_answer_test(w.ctx, w.users[reviewer].user_id or 0, _record(w.ctx, sid))
        assert task is not None
        with w.ctx.db.read() as s:
            kat = s.execute(select(KnownAnswerTest).order_by(KnownAnswerTest.id.desc())).scalars().first()
            assert kat is not None
            if any(c.get("mated") for c in kat.candidates):
                return task
    raise AssertionError("no mated known-answer test in 40 draws")


@on_both
def test_a_known_answer_mate_never_shows_the_probe_photo_itself(world: World) -> None:  # noqa: F811 (the imported fixture)
    sid = _search(world)
    _task(world, "rita", sid)
    task = _mated_known_answer_task(world, "rita", sid)
    base = f"/examinations/{task}"
    assert world.api("rita", "POST", f"{base}/probe-analysis", json={"quality": QUALITY, "suitable": True}).is_success
    probe = world.api("rita", "GET", f"{base}/probe/image")
    assert probe.status_code == 200
    probe_sha = hashlib.sha256(probe.content).hexdigest()
    for c in world.api("rita", "GET", f"{base}/candidates").json():
        opened = world.api("rita", "GET", f"{base}/candidates/{c['handle']}").json()
        for p in opened["photos"]:
            photo = world.api("rita", "GET", f"{base}/candidates/{c['handle']}/photos/{p['index']}")
            assert photo.status_code == 200
            assert hashlib.sha256(photo.content).hexdigest() != probe_sha, "the mate's photos include the probe"
            # nor through the enhancement API, which names the photo by the same index
            r = world.api(
                "rita",
                "POST",
                f"{base}/enhancements",
                json={
                    "image": "candidate",
                    "candidate": c["handle"],
                    "photo": p["index"],
                    "parent_sha256": None,
                    "operation": "brightness",
                    "parameters": {"delta": 1},
                    "purpose": "compare",
                },
            )
            assert r.status_code == 201, r.text
            assert r.json()["original_sha256"] != probe_sha


@on_both
def test_an_examiner_cannot_link_a_task_to_its_search_by_the_probe(world: World) -> None:  # noqa: F811 (the imported fixture)
    world.ctx.settings.keep_probe_images = True  # the agency keeps probes: the task serves the stored original
    sid = _search(world)
    task = _task(world, "rita", sid)
    base = f"/examinations/{task}"
    assert world.api("rita", "POST", f"{base}/probe-analysis", json={"quality": QUALITY, "suitable": True}).is_success
    probe = world.api("rita", "GET", f"{base}/probe/image")
    assert probe.status_code == 200
    probe_sha = hashlib.sha256(probe.content).hexdigest()
    with world.ctx.db.read() as s:
        record = s.get(SearchRecord, sid)
        assert record is not None
        case_number = record.case_number
    # the searcher tells the reviewer nothing here; the reviewer tries every door of the search side
    for path in ("/searches", f"/searches/{sid}", f"/cases/{case_number}/packet?format=json"):
        r = world.api("rita", "GET", path)
        assert r.status_code == (404 if path == f"/searches/{sid}" else 200), (path, r.text)
        assert probe_sha not in r.text, path
    # the searcher (and an auditor) still see the hash
    assert probe_sha in world.api("inv", "GET", f"/searches/{sid}").text
    # once rita's task is complete, the search is hers to see in full
    for rank in range(1, len(world.api("rita", "GET", f"{base}/candidates").json()) + 1):
        conclude(world.ctx, world.users["rita"], sid, rank, "neutral")
    assert probe_sha in world.api("rita", "GET", f"/searches/{sid}").text


@on_both
def test_an_open_examiner_gets_no_lead_report_of_their_search(world: World) -> None:  # noqa: F811 (the imported fixture)
    sid = _search(world)
    _task(world, "rita", sid)
    conclude(world.ctx, world.users["rob"], sid, 1, SAME)
    conclude(world.ctx, world.users["rita"], sid, 1, SAME)  # a released lead; rita's other candidates are open
    assert world.api("rita", "GET", f"/examinations/{_task(world, 'rita', sid)}").json()["status"] == "comparison"
    r = world.api("rita", "GET", f"/searches/{sid}/leads/1/report")
    assert r.status_code == 404 and r.json()["error"]["code"] == "lead_not_released", r.text
    assert r.json() == world.api("rita", "GET", f"/searches/{sid}/leads/3/report").json() | {
        "error": {**r.json()["error"], "message": r.json()["error"]["message"]}
    }
    refused = [a for a in _audits(world.ctx, "lead.report") if a["outcome"] != "ok"]
    assert refused and "examination" in refused[0]["details"].get("reason", "")
    # the auditor (no examination) has it
    assert world.api("aud", "GET", f"/searches/{sid}/leads/1/report").status_code == 200


@on_both
def test_a_known_answer_probe_is_served_as_a_live_probe_would_be(world: World) -> None:  # noqa: F811 (the imported fixture)
    """Where the agency keeps no probe images, a live task shows at most the searched face (an aligned crop,
    held an hour after the search); a known-answer test serving the enrolled full-resolution photo, or still
    serving it a day later, would tell itself apart."""
    import cv2
    import numpy as np
    from sqlalchemy import update

    from facetrail.cluster import held_probes
    from facetrail.examination.models import ExaminationTask

    assert not world.ctx.settings.keep_probe_images
    sid = _search(world)
    _task(world, "rita", sid)
    kat = examinations.mix_known_answer_test(world.ctx, world.users["rita"].user_id or 0, _record(world.ctx, sid))
    assert kat is not None
    r = world.api("rita", "GET", f"/examinations/{kat}/probe/image")
    assert r.status_code == 200
    pixels = cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_COLOR)
    assert pixels.shape[:2] == (112, 112)  # the aligned face, like the searched face a live task shows
    with world.ctx.db.transaction() as s:  # a day later: a live probe's searched face is long gone
        s.execute(
            update(ExaminationTask)
            .where(ExaminationTask.public_id == kat)
            .values(assigned_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=held_probes.FACES_SECONDS + 60))
        )
    r = world.api("rita", "GET", f"/examinations/{kat}/probe/image")
    assert r.status_code == 404 and r.json()["error"]["code"] == "image_not_retained"
    world.ctx.settings.keep_probe_images = True  # an agency that keeps probes: the original, as for a live one
    assert world.api("rita", "GET", f"/examinations/{kat}/probe/image").status_code == 200


@on_both
def test_a_known_answer_test_lists_each_person_once_like_a_search(world: World) -> None:  # noqa: F811 (the imported fixture)
    """Candidate lists are per subject: a known-answer test listing two faces of one person (both candidates then
    show the same photos) would tell itself apart."""
    from sqlalchemy import update

    from facetrail.storage.models import Face, Subject

    with world.ctx.db.transaction() as s:  # BIDEN has two photos too (RAJ's photo joins him)
        biden = s.execute(select(Subject.id).where(Subject.external_id == "BIDEN")).scalar_one()
        raj = s.execute(select(Subject.id).where(Subject.external_id == "RAJ")).scalar_one()
        s.execute(update(Face).where(Face.subject_id == raj).values(subject_id=biden))
    sid = _search(world)
    _task(world, "rita", sid)
    for _ in range(12):
        examinations.mix_known_answer_test(world.ctx, world.users["rita"].user_id or 0, _record(world.ctx, sid))
    with world.ctx.db.read() as s:
        for kat in s.execute(select(KnownAnswerTest)).scalars():
            subjects = [int(c["subject_id"]) for c in kat.candidates]
            assert len(subjects) == len(set(subjects)), kat.candidates


@on_both
def test_a_packet_never_names_the_other_examiner(world: World) -> None:  # noqa: F811 (the imported fixture)
    """Blind verification: rita finishes her examination while rob is still examining; her packet must not tell
    her that rob is the other examiner (he could be approached about the candidates he has not concluded)."""
    sid = _search(world)
    _task(world, "rita", sid)
    with world.ctx.db.read() as s:
        record = s.get(SearchRecord, sid)
        assert record is not None
        ranks, case_number = [int(c["rank"]) for c in record.candidates], record.case_number
    for rank in ranks:
        conclude(world.ctx, world.users["rita"], sid, rank, "neutral")
    conclude(world.ctx, world.users["rob"], sid, ranks[0], "neutral")  # rob has more to examine
    r = world.api("rita", "GET", f"/cases/{case_number}/packet?format=json")
    assert r.status_code == 200, r.text
    assert "rob.rev" not in r.text
    assert "neutral" in r.text  # his conclusion is there, without his name


@on_both
def test_a_reveal_says_nothing_of_the_other_examiner_until_the_task_is_complete(world: World) -> None:  # noqa: F811 (the imported fixture)
    """A live candidate's reveal could say the other examiner has concluded; a known-answer test's never could
    (it has no other examiner): the reveal carries nothing about the other examiner until the whole task is
    complete, and then the task says what it was anyway."""
    sid = _search(world)
    task = _task(world, "rita", sid)
    conclude(world.ctx, world.users["rob"], sid, 1, SAME)  # the other examiner has concluded on rank 1
    kat = examinations.mix_known_answer_test(world.ctx, world.users["rita"].user_id or 0, _record(world.ctx, sid))
    assert kat is not None
    reveals = {}
    for t in (task, kat):
        r = world.api("rita", "POST", f"/examinations/{t}/probe-analysis", json={"quality": QUALITY, "suitable": True})
        assert r.is_success, r.text
        listed = world.api("rita", "GET", f"/examinations/{t}/candidates").json()
        handle = listed[0]["handle"] if t == kat else _handle_of_rank(world, task, 1)
        world.api("rita", "PUT", f"/examinations/{t}/candidates/{handle}/checklist", json={"marks": ALL_SIMILAR})
        r = world.api(
            "rita",
            "POST",
            f"/examinations/{t}/candidates/{handle}/conclusion",
            json={"conclusion": "neutral", "reasoning": "r", "limitations": "l"},
        )
        assert r.status_code == 200, r.text
        reveals[t] = r.json()["reveal"]
        for path in (f"/examinations/{t}/candidates", f"/examinations/{t}/candidates/{handle}"):
            body = world.api("rita", "GET", path).text
            assert "other_conclusion" not in body, path
    assert set(reveals[task]) == set(reveals[kat]) and "other_conclusion" not in reveals[task]
    # once rita's live task is complete, the other conclusion is hers to read
    for rank in range(2, len(world.api("rita", "GET", f"/examinations/{task}/candidates").json()) + 1):
        conclude(world.ctx, world.users["rita"], sid, rank, "neutral")
    done = world.api("rita", "GET", f"/examinations/{task}/candidates/{_handle_of_rank(world, task, 1)}").json()
    assert done["reveal"]["other_conclusion"] == {"status": "concluded", "conclusion": SAME}


def _handle_of_rank(w: World, task: str, rank: int) -> str:
    return handle_for(w.ctx, task, rank)


@on_both
def test_an_examiner_cannot_count_live_tasks_in_the_search_history(world: World) -> None:  # noqa: F811 (the imported fixture)
    """Searches listed with their story withheld, counted against the queue, told how many tasks are live (a
    known-answer test has no search). A search on which the reviewer's task is open is absent from their history
    and answers "not found" like an unknown search (audited), until the task is complete."""
    sid = _search(world)
    task = _task(world, "rita", sid)
    kat = examinations.mix_known_answer_test(world.ctx, world.users["rita"].user_id or 0, _record(world.ctx, sid))
    assert kat is not None
    queue = world.api("rita", "GET", "/examinations").json()
    assert {t["task_id"] for t in queue} >= {task, kat}
    history = world.api("rita", "GET", "/searches").json()
    assert sid not in [item["search_id"] for item in history["items"]]
    assert not [i for i in history["items"] if str(i.get("justification", "")).startswith("withheld")]
    assert history["total"] == len(history["items"])
    hidden, unknown = world.api("rita", "GET", f"/searches/{sid}"), world.api("rita", "GET", "/searches/99999")
    assert hidden.status_code == unknown.status_code == 404
    assert hidden.json()["error"]["code"] == unknown.json()["error"]["code"]
    assert hidden.json()["error"]["message"].replace(str(sid), "N") == unknown.json()["error"]["message"].replace(
        "99999", "N"
    )
    for path in (f"/searches/{sid}/reviews", f"/searches/{sid}/candidates/1/thumbnail"):
        assert world.api("rita", "GET", path).status_code == 404, path
    refused = [a for a in _audits(world.ctx, "search.view") if a["outcome"] == "not_found"]
    assert refused and "examination" in refused[0]["details"]["reason"]
    # the other reviewers and the searcher see it as before
    assert world.api("inv", "GET", f"/searches/{sid}").status_code == 200
    # once rita's task is complete, the search is back in her history and view
    r = world.api("rita", "POST", f"/examinations/{task}/probe-analysis", json={"quality": QUALITY, "suitable": True})
    assert r.is_success, r.text
    for rank in range(1, len(world.api("rita", "GET", f"/examinations/{task}/candidates").json()) + 1):
        conclude(world.ctx, world.users["rita"], sid, rank, "neutral")
    assert sid in [i["search_id"] for i in world.api("rita", "GET", "/searches").json()["items"]]
    assert world.api("rita", "GET", f"/searches/{sid}").status_code == 200
