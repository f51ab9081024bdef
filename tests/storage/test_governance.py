"""Governance rules, each tried through every interface that offers it (core service, REST API through the
app, CLI): the policy document, the training gate, prior approval and emergency searches, two-person review.
Each attempt to break a rule must be refused AND the refusal audited. Real photos through the real pipeline.

The web UI has no governance forms yet (search requests, approvals, training): its search form goes through
cases.searches.run_search, the same gate these tests exercise.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from index_helpers import create_gallery, enroll_photos
from sqlalchemy import select, update
from typer.testing import CliRunner

import examination_helpers
from examination_helpers import DIFFERENT, SAME, conclude, task_of
from face_fixtures import BIDEN, FACEAPI, OBAMA, OBAMA2
from facetrail.accounts.service import create_api_token
from facetrail.cases import examinations, requests
from facetrail.cases.probe import SearchRequest
from facetrail.cases.reviews import list_reviews
from facetrail.cases.searches import candidate_thumbnail, get_search, run_search
from facetrail.cli.main import app as cli_app
from facetrail.config import get_settings
from facetrail.context import AppContext
from facetrail.errors import FaceTrailError, NotFoundError, PermissionDeniedError
from facetrail.governance import approvals
from facetrail.governance.models import SearchApproval, TrainingRecord
from facetrail.governance.policy import PolicyError, active_version, apply_policy, default_policy_text
from facetrail.governance.training import TrainingRequiredError, record_training
from facetrail.policy.principal import Principal
from facetrail.service.app import create_app
from facetrail.storage.models import AuditRecord, SearchRecord, User
from factories import audits, make_unit, make_user, search_request

GALLERY = {"OBAMA": OBAMA, "BIDEN": BIDEN, "AMY": FACEAPI / "amy" / "amy1.png", "RAJ": FACEAPI / "raj" / "raj1.png"}
TODAY = dt.datetime.now(dt.UTC).date()


class World(examination_helpers.World):
    """The shared in-process API world, with a search request through the API."""

    def api_search(self, who: str, path: str = "/searches", **fields: Any) -> Any:
        data = {
            "gallery": "bookings",
            "case_number": "2026-0042",
            "offense": "robbery",
            "legal_basis": "warrant",
            "justification": "armed robbery, store camera still",
            "candidates": "4",
            **fields,
        }
        return self.api(who, "POST", path, data=data, files={"probe": ("p.jpg", OBAMA2.read_bytes(), "image/jpeg")})


def _req(offense: str = "robbery", legal_basis: str = "warrant") -> SearchRequest:
    return search_request(offense=offense, legal_basis=legal_basis)


@pytest.fixture
def world(ctx: AppContext) -> Iterator[World]:
    ctx.settings.server.similarity_floor = -1.0  # seeds policy v1: every candidate shown, so several can be reviewed
    robbery, homicide = make_unit(ctx, "Robbery"), make_unit(ctx, "Homicide")
    users = {
        "inv": make_user(ctx, "ivan.inv", "investigator", robbery),
        "rita": make_user(ctx, "rita.rev", "reviewer", robbery),
        "rob": make_user(ctx, "rob.rev", "reviewer", robbery),
        "hank": make_user(ctx, "hank.rev", "reviewer", homicide),
        "new": make_user(ctx, "nora.new", "investigator", robbery),
        "admin": make_user(ctx, "adam.admin", "administrator", None),
        "aud": make_user(ctx, "ada.aud", "auditor", None),
    }
    create_gallery(ctx, "bookings", ctx.pipeline.model_id)
    enroll_photos(ctx, ctx.pipeline, 1, GALLERY)
    record_training(ctx, "ivan.inv", TODAY - dt.timedelta(days=10), "FR-101", actor="user:adam.admin")
    tokens = {name: create_api_token(ctx, who, "test", scope="full")[1] for name, who in users.items()}
    with TestClient(create_app(ctx)) as client:
        yield World(ctx, users, client, tokens)


# ------------------------------------------------------------------ policy


def test_policy_is_versioned_applied_with_an_audited_diff_and_stamped_on_searches(world: World) -> None:
    ctx = world.ctx
    version, policy = active_version(ctx)
    assert version == 1 and policy.search.similarity_floor == -1.0  # seeded from the settings
    first = run_search(ctx, world.users["inv"], OBAMA2.read_bytes(), _req())
    text = default_policy_text().replace("similarity_floor = 0.30", "similarity_floor = 0.25")
    r = world.api("admin", "PUT", "/policy", json={"text": text})
    assert r.status_code == 200, r.text
    assert r.json()["version"] == 2
    applied = audits(ctx, "policy.apply", "ok")
    assert [a["version"] for a in applied] == [1, 2]
    assert "-similarity_floor = -1.0" in applied[1]["diff"] and "+similarity_floor = 0.25" in applied[1]["diff"]
    second = run_search(ctx, world.users["inv"], OBAMA2.read_bytes(), _req())
    with ctx.db.read() as s:
        assert s.get(SearchRecord, first.search_id).policy_version == 1  # type: ignore[union-attr]
        assert s.get(SearchRecord, second.search_id).policy_version == 2  # type: ignore[union-attr]
    assert second.similarity_floor == 0.25 and first.similarity_floor == -1.0
    assert world.api("inv", "GET", "/policy").json()["version"] == 2  # everyone signed in reads it
    assert [v["version"] for v in world.api("aud", "GET", "/policy/history").json()] == [2, 1]


def test_policy_changes_are_refused_to_non_administrators_and_invalid_documents(world: World) -> None:
    ctx = world.ctx
    good = default_policy_text()
    r = world.api("rita", "PUT", "/policy", json={"text": good.replace("0.30", "0.10")})
    assert r.status_code == 403
    assert audits(ctx, "access.denied", "denied")[-1]["reason"].endswith("policy.manage")
    bad = good.replace("max_candidates = 50", "max_candidates = 500")
    r = world.api("admin", "PUT", "/policy", json={"text": bad})
    assert r.status_code == 400 and r.json()["error"]["code"] == "policy_invalid"
    assert "max_candidates" in r.json()["error"]["message"]
    with pytest.raises(PolicyError):
        apply_policy(ctx, "[search]\nallowed_offenses = []\n", actor="cli:test")
    assert len(audits(ctx, "policy.apply", "refused")) == 2
    assert active_version(ctx)[0] == 1  # nothing applied


def test_policy_cli_validate_apply_show_history(world: World, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACETRAIL_DATABASE_URL", world.ctx.settings.resolved_database_url)
    monkeypatch.setenv("FACETRAIL_DATA_DIR", str(world.ctx.data_dir))
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        bad = tmp_path / "bad.toml"
        bad.write_text(default_policy_text().replace('offenses = ["burglary", "fraud"]', 'offenses = ["jaywalking"]'))
        result = runner.invoke(cli_app, ["policy", "validate", str(bad)])
        assert result.exit_code != 0
        admin = ["--token", world.tokens["admin"]]
        result = runner.invoke(cli_app, ["policy", "apply", str(bad), *admin])
        assert result.exit_code != 0 and audits(world.ctx, "policy.apply", "refused")
        good = tmp_path / "good.toml"
        good.write_text(default_policy_text())
        assert runner.invoke(cli_app, ["policy", "validate", str(good)]).exit_code == 0
        # Without a signed-in administrator (or as a reviewer) the CLI applies nothing, and says who tried.
        assert runner.invoke(cli_app, ["policy", "apply", str(good)]).exit_code != 0
        as_reviewer = runner.invoke(cli_app, ["policy", "apply", str(good), "--token", world.tokens["rita"]])
        assert as_reviewer.exit_code != 0
        assert audits(world.ctx, "policy.apply", "denied")[-1]["actor"] == "user:rita.rev"
        result = runner.invoke(cli_app, ["policy", "apply", str(good), "--json", *admin])
        assert result.exit_code == 0, result.output
        assert json.loads(result.output)["version"] == 2
        history = json.loads(runner.invoke(cli_app, ["policy", "history", "--json"]).output)
        assert [v["version"] for v in history] == [2, 1]
        assert "similarity_floor = 0.30" in runner.invoke(cli_app, ["policy", "show"]).output
        # training through the CLI: nora can search afterwards
        result = runner.invoke(cli_app, ["user", "train", "nora.new", "--date", str(TODAY), "--json", *admin])
        assert result.exit_code == 0, result.output
        assert json.loads(result.output)["valid"] is True
        assert runner.invoke(cli_app, ["user", "train", "nobody", "--date", str(TODAY), *admin]).exit_code != 0
    finally:
        get_settings.cache_clear()
    assert run_search(world.ctx, world.users["new"], OBAMA2.read_bytes(), _req()).candidates is not None
    assert audits(world.ctx, "training.record")[-1]["target"] == "user:nora.new"
    assert audits(world.ctx, "training.record")[-1]["actor"] == "user:adam.admin"


# ------------------------------------------------------------------ training gate


def test_search_without_valid_training_is_refused_and_audited(world: World) -> None:
    ctx = world.ctx
    with pytest.raises(TrainingRequiredError):
        run_search(ctx, world.users["new"], OBAMA2.read_bytes(), _req())
    r = world.api_search("new")
    assert r.status_code == 403 and r.json()["error"]["code"] == "training_required"
    r = world.api_search("new", path="/search-requests", emergency="true", legal_basis="exigent-circumstances")
    assert r.status_code == 403 and r.json()["error"]["code"] == "training_required"
    refused = [a for a in audits(ctx, "search", "refused") if a["error"]["code"] == "training_required"]
    assert len(refused) == 2 and all(a["actor"] == "user:nora.new" for a in refused)
    assert audits(ctx, "search.emergency", "refused")[-1]["error"]["code"] == "training_required"
    # training expires after the policy's validity period
    record_training(ctx, "nora.new", TODAY - dt.timedelta(days=400), "FR-101", actor="user:adam.admin")
    with pytest.raises(TrainingRequiredError, match="expired"):
        run_search(ctx, world.users["new"], OBAMA2.read_bytes(), _req())
    # only administrators record training
    r = world.api("rita", "POST", "/users/nora.new/training", json={"completed_on": str(TODAY), "course": "x"})
    assert r.status_code == 403
    r = world.api("admin", "POST", "/users/nora.new/training", json={"completed_on": str(TODAY), "course": "FR-101"})
    assert r.status_code == 201 and r.json()["valid"] is True
    assert world.api_search("new").status_code == 201
    with ctx.db.read() as s:
        assert len(list(s.execute(select(TrainingRecord)).scalars())) == 3


def test_search_for_a_disallowed_offense_is_refused_and_audited(world: World) -> None:
    ctx = world.ctx
    with pytest.raises(FaceTrailError) as caught:
        run_search(ctx, world.users["inv"], OBAMA2.read_bytes(), _req(offense="jaywalking"))
    assert caught.value.code == "offense_not_allowed"
    r = world.api_search("inv", offense="jaywalking")
    assert r.status_code == 400 and r.json()["error"]["code"] == "offense_not_allowed"
    r = world.api_search("inv", path="/search-requests", offense="jaywalking")
    assert r.status_code == 400
    assert sum(a["error"]["code"] == "offense_not_allowed" for a in audits(ctx, "search", "refused")) == 2
    assert audits(ctx, "search.request", "refused")[-1]["offense"] == "jaywalking"
    with ctx.db.read() as s:
        assert s.execute(select(SearchRecord)).first() is None


# ------------------------------------------------------------------ prior approval


def test_prior_approval_request_approved_by_a_colleague_runs_for_the_requester(world: World) -> None:
    ctx = world.ctx
    with pytest.raises(approvals.ApprovalRequiredError):
        run_search(ctx, world.users["inv"], OBAMA2.read_bytes(), _req(offense="burglary"))
    r = world.api_search("inv", offense="burglary")
    assert r.status_code == 409 and r.json()["error"]["code"] == "approval_required"
    assert sum(a["error"]["code"] == "approval_required" for a in audits(ctx, "search", "refused")) == 2

    r = world.api_search("inv", path="/search-requests", offense="burglary")
    assert r.status_code == 201, r.text
    request = r.json()["request"]
    assert request["status"] == "pending" and request["probe_held"] and r.json()["search"] is None
    assert approvals.pending_store(ctx).exists(request["probe_sha256"])
    rid = request["id"]
    # the requester cannot approve it (an investigator may not approve at all); another unit's reviewer
    # does not even see it
    r = world.api("inv", "POST", f"/search-requests/{rid}/approve", json={})
    assert r.status_code == 403
    r = world.api("hank", "POST", f"/search-requests/{rid}/approve", json={})
    assert r.status_code == 404
    assert audits(ctx, "access.denied", "denied")[-1]["reason"].endswith("search.approve")  # the route's check
    assert [a["outcome"] for a in audits(ctx, "search.approve")] == ["refused"]  # hank: not found in his unit
    assert [x["id"] for x in world.api("rita", "GET", "/search-requests").json()] == [rid]
    assert world.api("hank", "GET", "/search-requests").json() == []

    r = world.api("rita", "POST", f"/search-requests/{rid}/approve", json={"reason": "burglary series"})
    assert r.status_code == 200, r.text
    done = r.json()
    assert done["status"] == "approved" and done["decided_by"] == "rita.rev" and done["search_id"]
    assert not done["probe_held"] and not approvals.pending_store(ctx).exists(request["probe_sha256"])
    view = get_search(ctx, world.users["inv"], done["search_id"])
    assert view.actor == "user:ivan.inv" and view.candidates
    r = world.api("rita", "POST", f"/search-requests/{rid}/approve", json={})
    assert r.status_code == 409  # decided once


def test_approving_ones_own_request_is_refused(world: World) -> None:
    ctx = world.ctx
    rid = world.api_search("inv", path="/search-requests", offense="burglary").json()["request"]["id"]
    # a reviewer who files a request (as an investigator before a role change) may not decide it
    with ctx.db.transaction() as s:
        s.execute(
            update(SearchApproval).where(SearchApproval.id == rid).values(requester_id=world.users["rita"].user_id)
        )
    with pytest.raises(PermissionDeniedError, match="own"):
        requests.approve(ctx, world.users["rita"], rid)
    r = world.api("rita", "POST", f"/search-requests/{rid}/deny", json={"reason": "no"})
    assert r.status_code == 403
    refused = [a for a in audits(ctx, "search.approve") + audits(ctx, "search.deny") if "own" in a["error"]["message"]]
    assert len(refused) == 2


def test_denied_request_drops_the_probe_needs_a_reason_and_is_reported(world: World) -> None:
    ctx = world.ctx
    request = world.api_search("inv", path="/search-requests", offense="burglary").json()["request"]
    r = world.api("rob", "POST", f"/search-requests/{request['id']}/deny", json={"reason": "  "})
    assert r.status_code == 400 and audits(ctx, "search.deny", "refused")
    r = world.api("rob", "POST", f"/search-requests/{request['id']}/deny", json={"reason": "no burglary series"})
    assert r.status_code == 200 and r.json()["status"] == "denied" and r.json()["search_id"] is None
    assert not approvals.pending_store(ctx).exists(request["probe_sha256"])
    assert audits(ctx, "search.deny", "ok")[0]["reason"] == "no burglary series"
    from facetrail.reports.transparency import collect_report

    report = collect_report(ctx, str(TODAY), str(TODAY), actor="test")
    approvals_section = next(sec for sec in report.sections if sec.key == "approvals")
    assert approvals_section.rows == [["Robbery", 0, 1]]


# ------------------------------------------------------------------ emergency searches


def _emergency(world: World) -> dict[str, Any]:
    r = world.api_search(
        "inv",
        path="/search-requests",
        emergency="true",
        legal_basis="exigent-circumstances",
        justification="child missing, abductor photographed",
    )
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def test_emergency_search_runs_at_once_and_is_approved_within_the_window(world: World) -> None:
    ctx = world.ctx
    r = world.api_search("inv", path="/search-requests", emergency="true")  # must cite exigent circumstances
    assert r.status_code == 400 and audits(ctx, "search.emergency", "refused")
    done = _emergency(world)
    assert done["search"]["candidates"] and done["request"]["status"] == "pending"
    deadline = dt.datetime.fromisoformat(done["request"]["deadline"])
    requested = dt.datetime.fromisoformat(done["request"]["requested_at"])
    assert (deadline - requested) == dt.timedelta(hours=48)
    r = world.api("rita", "POST", f"/search-requests/{done['request']['id']}/approve", json={"reason": "ok"})
    assert r.status_code == 200 and r.json()["status"] == "approved" and not r.json()["results_locked"]
    assert get_search(ctx, world.users["inv"], done["search"]["search_id"]).candidates


def test_locked_results_of_denied_or_late_emergency_searches_cannot_be_seen(world: World) -> None:
    ctx = world.ctx
    denied, late = _emergency(world), _emergency(world)
    world.api("rita", "POST", f"/search-requests/{denied['request']['id']}/deny", json={"reason": "not exigent"})
    with ctx.db.transaction() as s:  # the window passes
        s.execute(
            update(SearchApproval)
            .where(SearchApproval.id == late["request"]["id"])
            .values(deadline=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1))
        )
    for item in (denied, late):
        sid = item["search"]["search_id"]
        for who in ("inv", "rita"):  # rita examines it: her open task makes it "not found" to her first
            refused = approvals.ResultsLockedError if who == "inv" else (approvals.ResultsLockedError, NotFoundError)
            with pytest.raises(refused):
                get_search(ctx, world.users[who], sid)
            r = world.api(who, "GET", f"/searches/{sid}")
            assert (r.status_code, r.json()["error"]["code"]) in {(403, "results_locked"), (404, "search_not_found")}
            assert r.status_code == 403 or who == "rita"
            assert world.api(who, "GET", f"/searches/{sid}/candidates/1/thumbnail").status_code in (403, 404)
        with pytest.raises(approvals.ResultsLockedError):
            candidate_thumbnail(ctx, world.users["inv"], sid, 1)
        examinations.assign_pending(ctx, world.users["rob"].unit_id)
        task = task_of(ctx, "rob.rev", sid)
        assert task is not None
        with pytest.raises(examinations.ExaminationLockedError):
            examinations.get_task(ctx, world.users["rob"], task)
        assert all(t["task_id"] != task for t in examinations.queue(ctx, world.users["rob"]))
    r = world.api("rob", "POST", f"/search-requests/{late['request']['id']}/approve", json={})
    assert r.status_code == 409 and "window" in r.json()["error"]["message"]
    locked = audits(ctx, "search.view", "refused") + audits(ctx, "search.thumbnail", "refused")
    assert len(locked) >= 8 and all(a["error"]["code"] == "results_locked" for a in locked)
    assert audits(ctx, "search.emergency.expired")
    # the packet names the case's locked searches without their candidates
    from facetrail.reports.packet import OPERATOR_SCOPE, collect_packet

    packet = collect_packet(ctx, "2026-0042", actor="test", scope=OPERATOR_SCOPE)
    entries = {e["search_id"]: e for e in packet.data["searches"]}
    for item in (denied, late):
        entry = entries[item["search"]["search_id"]]
        assert entry["emergency"]["results_locked"] and entry["candidates"] == []
    from facetrail.reports.transparency import collect_report

    report = collect_report(ctx, str(TODAY), str(TODAY), actor="test")
    rows = dict(map(tuple, next(sec for sec in report.sections if sec.key == "emergency_searches").rows))
    assert rows["denied (results locked)"] == 1 and rows["window passed (results locked)"] == 1


# ------------------------------------------------------------------ two-person review


def test_two_person_review_blind_release_and_disagreement(world: World) -> None:
    ctx = world.ctx
    users = world.users
    sid = run_search(ctx, users["inv"], OBAMA2.read_bytes(), _req()).search_id
    conclude(ctx, users["rita"], sid, 1, SAME, "same ears")
    conclude(ctx, users["rita"], sid, 2, SAME)
    # rob has not concluded: his task is open, the search is not his to see (view, review list, API)
    with pytest.raises(NotFoundError):
        get_search(ctx, users["rob"], sid)
    with pytest.raises(NotFoundError):
        list_reviews(ctx, users["rob"], sid)
    assert world.api("rob", "GET", f"/searches/{sid}").status_code == 404
    assert world.api("rob", "GET", f"/searches/{sid}/reviews").status_code == 404
    # the investigator sees every candidate "under review": no identity, no face
    inv_view = get_search(ctx, users["inv"], sid)
    assert inv_view.candidates and all(c.subject_external_id == "under review" for c in inv_view.candidates)
    assert world.api("inv", "GET", f"/searches/{sid}/candidates/1/thumbnail").status_code == 403
    assert audits(ctx, "search.thumbnail", "denied")[-1]["reason"].startswith("candidate under review")

    conclude(ctx, users["rob"], sid, 1, "moderate_support_same_source")
    conclude(ctx, users["rob"], sid, 2, DIFFERENT)
    # rank 1 released: the investigator sees who and the face; rank 2 a recorded disagreement, shown to both
    inv_view = get_search(ctx, users["inv"], sid)
    assert inv_view.candidates
    assert inv_view.candidates[0].subject_external_id != "under review"
    assert inv_view.candidates[1].subject_external_id == "under review"
    assert world.api("inv", "GET", f"/searches/{sid}/candidates/1/thumbnail").status_code == 200
    assert len(audits(ctx, "lead.released")) == 1
    disagreement = audits(ctx, "review.disagreement")
    assert len(disagreement) == 1 and disagreement[0]["rank"] == 2
    from facetrail.examination.models import ExaminationTask, ExaminedCandidate

    for who in ("rita", "rob"):  # each completes the task: only then is the search theirs to see
        with ctx.db.read() as s:
            open_ranks = list(
                s.execute(
                    select(ExaminedCandidate.rank)
                    .join(ExaminationTask, ExaminationTask.id == ExaminedCandidate.task_id)
                    .where(
                        ExaminationTask.public_id == task_of(ctx, f"{who}.rev", sid),
                        ExaminedCandidate.conclusion.is_(None),
                    )
                ).scalars()
            )
        for rank in open_ranks:
            conclude(ctx, users[who], sid, rank, "neutral")
    for who in ("rita", "rob"):
        seen = get_search(ctx, users[who], sid).candidates
        assert seen and {r["decision"] for r in seen[1].reviews} == {SAME, DIFFERENT}
        assert "another reviewer" in {r["reviewer"] for r in seen[1].reviews}  # blind: never who
    # conclusions are final: no change of mind after seeing the other's
    task = task_of(ctx, "rita.rev", sid)
    assert task is not None
    with pytest.raises(examinations.ConclusionFinalError):
        examinations.record_conclusion(ctx, users["rita"], task, _handle(ctx, task, 2), DIFFERENT, "r", "l")
    assert len(audits(ctx, "examination.conclude", "refused")) == 1


def _handle(ctx: AppContext, task: str, rank: int) -> str:
    from examination_helpers import handle_for

    return handle_for(ctx, task, rank)


def test_reviewing_ones_own_search_is_refused(world: World) -> None:
    ctx = world.ctx
    sid = run_search(ctx, world.users["inv"], OBAMA2.read_bytes(), _req()).search_id
    with ctx.db.transaction() as s:  # the searcher becomes a reviewer of the same unit
        s.execute(update(User).where(User.id == world.users["inv"].user_id).values(role="reviewer"))
    as_reviewer = Principal(**{**world.users["inv"].__dict__, "role": "reviewer"})
    # the system never assigns the searcher; another's task answers "not found", like none at all
    assert examinations.queue(ctx, as_reviewer) == []
    assert task_of(ctx, "ivan.inv", sid) is None
    rita_task = task_of(ctx, "rita.rev", sid)
    assert rita_task is not None
    with pytest.raises(examinations.ExaminationNotFoundError):
        examinations.get_task(ctx, as_reviewer, rita_task)
    r = world.api("inv", "GET", f"/examinations/{rita_task}")
    assert r.status_code == 404 and r.json()["error"]["code"] == "examination_not_found"
    assert len(audits(ctx, "examination.view", "not_found")) == 2


# ------------------------------------------------------------------ audit records


def test_audit_records_cannot_be_edited_or_deleted_through_any_interface(world: World) -> None:
    routes = [(m, r.path) for r in world.client.app.routes for m in getattr(r, "methods", set())]  # type: ignore[attr-defined]
    assert not [(m, p) for m, p in routes if p.startswith("/api/v1/audit") and m in {"PUT", "PATCH", "DELETE"}]
    for method in ("DELETE", "PUT", "PATCH"):
        r = world.api("admin", method, "/audit/1", json={})
        assert r.status_code in (404, 405)
    result = CliRunner().invoke(cli_app, ["audit", "--help"])
    assert result.exit_code == 0 and "delete" not in result.output.lower() and "edit" not in result.output.lower()
    with world.ctx.db.read() as s:
        assert s.execute(select(AuditRecord).limit(1)).first() is not None


def test_a_reviewers_disclosure_packet_does_not_break_blind_review(world: World) -> None:
    """Rob has not decided yet: his packet must not show Rita's decisions on that search's candidates."""
    from facetrail.reports.packet import collect_packet, scope_for

    ctx = world.ctx
    users = world.users
    sid = run_search(ctx, users["inv"], OBAMA2.read_bytes(), _req()).search_id
    conclude(ctx, users["rita"], sid, 1, SAME, "same ears")
    conclude(ctx, users["rob"], sid, 2, SAME)  # rob is examining: his task is not complete

    def rob_packet() -> dict[str, Any]:
        made = collect_packet(ctx, "2026-0042", actor=users["rob"].actor, scope=scope_for(users["rob"]))
        [entry] = [e for e in made.data["searches"] if e["search_id"] == sid]
        return entry

    entry = rob_packet()
    assert entry["candidates"] == [] and entry["justification"].startswith("withheld")
    assert all(h["reviewer"] != "user:rita.rev" for h in entry["review_history"])
    assert "same ears" not in json.dumps(entry)
    # the auditor's packet (no blind review to protect) and, once Rob decided, his own show both decisions
    audit_entry = collect_packet(ctx, "2026-0042", actor=users["aud"].actor, scope=scope_for(users["aud"]))
    assert any(d["reviewer"] == "rita.rev" for d in audit_entry.data["searches"][0]["candidates"][0]["decisions"])
    for rank in (1, 3, 4):
        conclude(ctx, users["rob"], sid, rank, SAME)
    first = rob_packet()["candidates"][0]
    assert {d["reviewer"] for d in first["decisions"]} == {"another reviewer", "rob.rev"} and first["released"]


def test_an_undecided_request_expires_and_its_held_probe_is_deleted(world: World) -> None:
    ctx = world.ctx
    r = world.api_search("inv", path="/search-requests", offense="burglary")
    assert r.status_code == 201, r.text
    request = r.json()["request"]
    hours = active_version(ctx)[1].approval.request_expiry_hours
    assert request["deadline"] is not None
    assert approvals.pending_store(ctx).exists(request["probe_sha256"])
    with ctx.db.transaction() as s:  # time passes: nobody decided within the policy's window
        s.execute(
            update(SearchApproval)
            .where(SearchApproval.id == request["id"])
            .values(
                deadline=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1),
                requested_at=dt.datetime.now(dt.UTC) - dt.timedelta(hours=hours + 1),
            )
        )
    r = world.api("rita", "POST", f"/search-requests/{request['id']}/approve", json={"reason": "late"})
    assert r.status_code == 409 and "expired" in r.json()["error"]["message"]
    assert not approvals.pending_store(ctx).exists(request["probe_sha256"])
    [listed] = world.api("inv", "GET", "/search-requests").json()
    assert listed["status"] == "expired" and not listed["probe_held"] and listed["search_id"] is None
    assert [a["request_id"] for a in audits(ctx, "search.request.expired")] == [request["id"]]
    assert [a["outcome"] for a in audits(ctx, "search.approve")] == ["refused"]
    with ctx.db.read() as s:
        assert s.execute(select(SearchRecord)).first() is None  # it never ran
