"""The main flows over HTTP against a real server process: administration, enrollment by upload, detect and
verify, a search with a multi-face probe, scope between units, review, and the audit trail of all of it."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from contextlib import closing
from typing import Any

import cv2
import httpx
import pytest
from live_server import FIXTURES, FR, PASSWORD, World, enrol_totp, login, make_user, second_factor

from examination_helpers import NEUTRAL, SAME, conclude_over_api, examiners_of, server_db, task_of
from facetrail.storage.models import SearchRecord

SEARCH_FIELDS = {
    "gallery": "bookings",
    "case_number": "2026-0042",
    "offense": "robbery",
    "legal_basis": "warrant",
    "justification": "CCTV still from the bank robbery on 3 May",
}


def _photo(name: str) -> tuple[str, bytes, str]:
    return (name, (FR / name).read_bytes(), "image/jpeg")


def _search(client: httpx.Client, probe: tuple[str, bytes, str], **fields: Any) -> httpx.Response:
    return client.post("/api/v1/searches", files={"probe": probe}, data={**SEARCH_FIELDS, **fields})


def _audit(world: World, **params: Any) -> list[dict[str, Any]]:
    with world.as_role("auditor") as auditor:
        r = auditor.get("/api/v1/audit/records", params={"limit": 1000, **params})
    assert r.status_code == 200, r.text
    records: list[dict[str, Any]] = r.json()["records"]
    return records


@pytest.fixture(scope="module")
def searches(world: World) -> dict[str, Any]:
    """The north investigator searches each face of the two-person probe, choosing after a 409."""
    out: dict[str, Any] = {}
    with world.as_role("investigator") as investigator:
        r = _search(investigator, _photo("two_people.jpg"))
        assert r.status_code == 409, r.text
        out["choice"] = r.json()["error"]
        for index in (0, 1):
            r = _search(investigator, _photo("two_people.jpg"), face_index=str(index), candidates="5")
            assert r.status_code == 201, r.text
            out[index] = r.json()
    return out


def test_first_start_prints_the_administrator_and_forces_a_password_change(world: World) -> None:
    log = world.server.log()
    assert "First start: an administrator account was created" in log
    with world.server.client() as client:
        r = client.post("/api/v1/auth/login", json={"username": "admin", "password": PASSWORD})
    assert r.json()["user"] == {
        "username": "admin",
        "role": "administrator",
        "unit": None,
        "must_change_password": False,
        "via": "session",
    }


def test_session_changes_need_the_csrf_header(world: World) -> None:
    client, _ = login(world.server, "admin", PASSWORD)
    with closing(client):
        del client.headers["x-csrf-token"]
        r = client.post("/api/v1/units", json={"name": "no-csrf"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "csrf_failed"


def test_users_reset_disable_and_token_revocation(world: World) -> None:
    admin = world.admin
    users = {u["username"]: u for u in admin.get("/api/v1/users").json()}
    assert users[world.usernames["investigator_south"]]["unit"] == "south"
    r = admin.post("/api/v1/users", json={"username": "temp.user", "role": "investigator", "unit": "north"})
    assert r.status_code == 201 and len(r.json()["one_time_password"]) >= 12
    r = admin.post("/api/v1/users", json={"username": "temp.user", "role": "auditor"})
    assert r.status_code == 409
    r = admin.post("/api/v1/users", json={"username": "no.unit", "role": "investigator"})
    assert r.status_code == 400 and r.json()["error"]["details"]["field"] == "unit"
    r = admin.patch("/api/v1/users/temp.user", json={"reset_password": True})
    assert r.status_code == 200 and r.json()["one_time_password"] and r.json()["user"]["must_change_password"]
    one_time = r.json()["one_time_password"]
    client, _ = login(world.server, "temp.user", one_time)
    with closing(client):
        r = client.post("/api/v1/auth/password", json={"current_password": one_time, "new_password": PASSWORD})
        assert r.status_code == 200
        enrol_totp(client, world.server, "temp.user")
        secret = client.post("/api/v1/auth/tokens", json={"name": "t"}).json()["secret"]
    with world.server.client(secret) as temp:
        assert temp.get("/api/v1/auth/me").json()["username"] == "temp.user"
        tokens = [t for t in admin.get("/api/v1/tokens").json() if t["user"] == "temp.user"]
        assert admin.delete(f"/api/v1/tokens/{tokens[0]['id']}").json()["revoked"] is True
        assert temp.get("/api/v1/auth/me").status_code == 401
    r = admin.patch("/api/v1/users/temp.user", json={"disabled": True})
    assert r.json()["user"]["disabled"] is True
    with world.server.client() as anonymous:
        r = anonymous.post("/api/v1/auth/login", json={"username": "temp.user", "password": PASSWORD})
    assert r.status_code == 401
    assert {u["name"] for u in admin.get("/api/v1/units").json()} >= {"north", "south"}


def test_enrollment_by_upload_reports_each_file_and_is_idempotent(world: World) -> None:
    admin = world.admin
    files = [
        ("files", _photo("obama.jpg")),
        ("files", _photo("two_people.jpg")),
        ("files", ("blank.png", (FIXTURES / "nonface" / "blank_white.png").read_bytes(), "image/png")),
        ("files", ("raj1.png", (FIXTURES / "faceapi" / "raj" / "raj1.png").read_bytes(), "image/png")),
    ]
    r = admin.post(
        "/api/v1/galleries/bookings/enroll",
        files=files,
        data={"subject_ids": ["B-OBAMA", "B-PAIR", "B-BLANK", "B-RAJ"], "capture_dates": ["2020-01-31"]},
    )
    assert r.status_code == 200, r.text
    by_name = {f["filename"]: f for f in r.json()["files"]}
    assert by_name["obama.jpg"]["status"] == "duplicate"
    assert by_name["obama.jpg"]["face_id"] == world.subject_face["B-OBAMA"]
    assert (by_name["two_people.jpg"]["status"], by_name["two_people.jpg"]["reason"]) == ("rejected", "multiple_faces")
    assert (by_name["blank.png"]["status"], by_name["blank.png"]["reason"]) == ("rejected", "no_face")
    assert by_name["raj1.png"]["status"] == "enrolled"
    assert r.json()["summary"]["enrolled"] == 1 and r.json()["summary"]["skipped_duplicate"] == 1

    subject = admin.get("/api/v1/galleries/bookings/subjects/B-RAJ").json()
    assert subject["faces"][0]["capture_date"] == "2020-01-31"
    thumb = admin.get(subject["faces"][0]["thumbnail_url"])
    assert thumb.headers["content-type"] == "image/jpeg" and thumb.content[:2] == b"\xff\xd8"
    page = admin.get("/api/v1/galleries/bookings/subjects", params={"q": "B-"}).json()
    assert {s["external_id"] for s in page["items"]} >= {"B-OBAMA", "B-BIDEN", "B-AMY", "B-RAJ"}
    with world.as_role("investigator") as investigator:
        assert investigator.get(subject["faces"][0]["thumbnail_url"]).status_code == 403
        assert investigator.get("/api/v1/galleries/bookings").json()["faces"] == 4

    assert second_factor(admin, world.server, "admin").status_code == 200  # deleting a subject: step-up
    r = admin.delete("/api/v1/galleries/bookings/subjects/B-RAJ", params={"reason": "record expunged"})
    assert r.status_code == 200 and r.json()["deleted_face_ids"] == [subject["faces"][0]["face_id"]]
    assert admin.get("/api/v1/galleries/bookings/subjects/B-RAJ").status_code == 404
    assert admin.get(subject["faces"][0]["thumbnail_url"]).status_code == 404
    deleted = _audit(world, action="subject.delete")
    assert deleted[0]["details"]["reason"] == "record expunged" and deleted[0]["actor"] == "user:admin"


def test_detect_lists_faces_and_verify_compares_two_photos(world: World) -> None:
    with world.as_role("investigator") as investigator:
        r = investigator.post("/api/v1/detect", files={"image": _photo("two_people.jpg")})
        assert r.status_code == 200
        faces = r.json()["faces"]
        assert [f["index"] for f in faces] == [0, 1]
        assert (
            faces[0]["box"]["width"] * faces[0]["box"]["height"] >= faces[1]["box"]["width"] * faces[1]["box"]["height"]
        )
        assert faces[0]["thumbnail_data_url"].startswith("data:image/jpeg;base64,")
        same = investigator.post(
            "/api/v1/verify", files={"image_a": _photo("obama.jpg"), "image_b": _photo("obama2.jpg")}
        ).json()
        other = investigator.post(
            "/api/v1/verify", files={"image_a": _photo("obama.jpg"), "image_b": _photo("biden.jpg")}
        ).json()
    assert same["decision"] == "same_person_likely" and other["decision"] == "not_established"
    assert same["similarity"] > other["similarity"]
    assert same["estimated_fmr"] < other["estimated_fmr"]


def test_multi_face_probe_needs_a_choice_and_each_face_finds_its_person(world: World, searches: dict[str, Any]) -> None:
    choice = searches["choice"]
    assert choice["code"] == "face_choice_required"
    assert [f["index"] for f in choice["details"]["faces"]] == [0, 1]
    tops = set()
    for index in (0, 1):
        result = searches[index]
        assert result["kind"] == "candidate_list" and "not an identification" in result["notice"]
        assert result["probe"]["face_index"] == index and result["probe"]["faces_detected"] == 2
        assert result["probe_face"]["index"] == index
        assert result["unit"] == "north" and result["legal_basis"] == "warrant"
        candidates = result["candidates"]
        assert candidates and all(c["similarity"] is None for c in candidates)  # no score while under review
        assert [c["rank"] for c in candidates] == list(range(1, len(candidates) + 1))
        assert candidates[0]["subject_external_id"] == "under review"  # to the investigator, until released
        with world.as_role("reviewer") as reviewer:  # nothing before their conclusion (sequential unmasking)
            assert reviewer.get(f"/api/v1/searches/{result['search_id']}").json()["candidates"] == []
        with server_db(world.server.data_dir) as db, db.db.read() as s:  # the answer key
            record = s.get(SearchRecord, result["search_id"])
            assert record is not None
            assert all(c["similarity"] >= result["similarity_floor"] for c in record.candidates[:1])
            tops.add(record.candidates[0]["subject_external_id"])
    assert tops == {"B-OBAMA", "B-BIDEN"}


def test_search_refusals_name_the_problem(world: World) -> None:
    image = cv2.imread(str(FR / "obama.jpg"))
    ok, blurred = cv2.imencode(".jpg", cv2.GaussianBlur(image, (0, 0), 25))
    assert ok
    with world.as_role("investigator") as investigator:
        r = _search(investigator, ("blurred.jpg", blurred.tobytes(), "image/jpeg"))
        assert r.status_code == 422 and r.json()["error"]["code"] == "probe_quality_failed"
        assert any("blurred" in reason for reason in r.json()["error"]["details"]["reasons"])
        r = _search(investigator, _photo("obama.jpg"), offense="jaywalking")
        assert r.status_code == 400 and r.json()["error"]["details"]["field"] == "offense"
        r = _search(investigator, _photo("obama.jpg"), legal_basis="hunch")
        assert r.status_code == 400 and r.json()["error"]["details"]["field"] == "legal_basis"
        r = _search(investigator, _photo("obama.jpg"), candidates="51")
        assert r.status_code == 400 and r.json()["error"]["details"]["field"] == "candidates"
        r = _search(investigator, _photo("obama.jpg"), gallery="nope")
        assert r.status_code == 404
    refused = [
        rec
        for rec in _audit(world, action="search", outcome="refused")
        if rec["actor"] == f"user:{world.usernames['investigator']}"
    ]
    codes = {rec["details"]["error"]["code"] for rec in refused}
    assert {"probe_quality_failed", "bad_input", "face_choice_required", "gallery_not_found"} <= codes


def test_scope_history_and_review(world: World, searches: dict[str, Any]) -> None:
    search_id = searches[0]["search_id"]
    path = f"/api/v1/searches/{search_id}"
    with world.as_role("investigator") as investigator:
        ids = [s["search_id"] for s in investigator.get("/api/v1/searches").json()["items"]]
        assert search_id in ids
        thumb = investigator.get(f"{path}/candidates/1/thumbnail")  # under review until two reviewers release it
        assert thumb.status_code == 403
        assert investigator.get("/api/v1/examinations").status_code == 403
    for outsider in ("investigator_south", "reviewer_south"):
        with world.as_role(outsider) as other:
            assert search_id not in [s["search_id"] for s in other.get("/api/v1/searches").json()["items"]]
            r = other.get(path)
            assert r.status_code == 404 and r.json()["error"]["code"] == "search_not_found"
            assert other.get(f"{path}/candidates/1/thumbnail").status_code == 404
    with server_db(world.server.data_dir) as db:
        examiners_of(db, search_id)
        task = task_of(db, world.usernames["reviewer"], search_id)
    assert task is not None
    with world.as_role("reviewer_south") as other:  # another unit's reviewer: never assigned, "not found"
        assert other.get(f"/api/v1/examinations/{task}").status_code == 404
    with world.as_role("auditor") as auditor:
        meta = auditor.get(path).json()
        assert meta["candidates"] is None and meta["case_number"] == "2026-0042"
        assert auditor.get(f"{path}/candidates/1/thumbnail").status_code == 403
        assert search_id in [s["search_id"] for s in auditor.get("/api/v1/searches").json()["items"]]
    with world.stepped_up("reviewer") as reviewer:  # a conclusion that can release needs a fresh second factor
        # sequential unmasking: the search is not the examiner's to see while their task is open
        assert reviewer.get(path).status_code == 404
        with server_db(world.server.data_dir) as db:
            r = conclude_over_api(reviewer, db, world.usernames["reviewer"], search_id, 1, SAME, "same scar")
        assert r.status_code == 200, r.text
        assert r.json()["conclusion"] == SAME and r.json()["reveal"]["rank"] == 1
        handle = r.json()["handle"]
        r = reviewer.post(
            f"/api/v1/examinations/{task}/candidates/{handle}/conclusion",
            json={"conclusion": NEUTRAL, "reasoning": "second look", "limitations": "none"},
        )
        assert r.status_code == 409 and r.json()["error"]["code"] == "conclusion_final"
        r = reviewer.post(
            f"/api/v1/examinations/{task}/candidates/{handle}/conclusion",
            json={"conclusion": "match", "reasoning": "x", "limitations": "y"},
        )
        assert r.status_code == 400
        if reviewer.get(f"/api/v1/examinations/{task}").json()["status"] == "complete":
            detail = reviewer.get(path).json()
            assert [c["rank"] for c in detail["candidates"]] == [1]
            assert detail["candidates"][0]["thumbnail_url"].endswith("/candidates/1/thumbnail")
            reviews = reviewer.get(f"{path}/reviews").json()
            assert [(x["rank"], x["decision"], x["notes"]) for x in reviews] == [(1, SAME, "same scar")]
        else:  # more candidates to examine: still not found
            assert reviewer.get(path).status_code == 404
    with world.as_role("investigator") as investigator:
        shown = investigator.get(path).json()
    # one reviewer so far: the investigator sees the candidate "under review", without decisions (governance)
    assert shown["candidates"][0]["reviews"] == [] and shown["candidates"][0]["subject_external_id"] == "under review"

    decided = [r for r in _audit(world, action="review.decide") if r["target"] == f"search:{search_id}"]
    assert [(r["details"]["decision"], r["details"]["previous_decision"]) for r in decided] == [(SAME, None)]
    hidden = [
        r for r in _audit(world, action="search.view", outcome="not_found") if r["target"] == f"search:{search_id}"
    ]
    assert {r["actor"] for r in hidden} >= {
        f"user:{world.usernames['investigator_south']}",
        f"user:{world.usernames['reviewer_south']}",
    }


def test_audit_shows_the_actions_verifies_and_exports(world: World, searches: dict[str, Any]) -> None:
    records = _audit(world)
    actions = {r["action"] for r in records}
    assert {
        "user.bootstrap",
        "user.create",
        "unit.create",
        "gallery.create",
        "enroll.batch",
        "enroll.run",
        "search",
        "search.view",
        "search.thumbnail",
        "detect",
        "verify.upload",
        "face.view",
        "subject.view",
        "auth.login",
        "user.password_change",
        "access.denied",
        "audit.read",
    } <= actions
    ran = [r for r in records if r["action"] == "search" and r["outcome"] == "ok"]
    assert {r["details"]["search_id"] for r in ran} >= {searches[0]["search_id"], searches[1]["search_id"]}
    assert all(r["details"]["legal_basis"] == "warrant" and r["details"]["request"]["ip"] == "127.0.0.1" for r in ran)
    since = _audit(world, since="2000-01-01", until="2000-01-02")
    assert since == []
    with world.stepped_up("auditor") as auditor:  # exporting the audit log needs a fresh second factor
        verification = auditor.get("/api/v1/audit/verify").json()
        assert verification["ok"] is True and verification["first_bad_seq"] is None
        jsonl = auditor.get("/api/v1/audit/export")
        assert jsonl.headers["content-type"].startswith("application/x-ndjson")
        rows = [json.loads(line) for line in jsonl.text.splitlines()]
        assert [r["seq"] for r in rows] == list(range(1, len(rows) + 1))
        table = auditor.get("/api/v1/audit/export", params={"format": "csv"})
        assert table.headers["content-type"].startswith("text/csv")
        assert len(list(csv.DictReader(io.StringIO(table.text)))) > len(rows)  # the first export is in it
        page = auditor.get("/api/v1/audit/records", params={"limit": 1, "offset": 1}).json()
        assert page["has_more"] is True and len(page["records"]) == 1
    exports = _audit(world, action="audit.export")
    assert {r["details"]["format"] for r in exports} == {"jsonl", "csv"}


def test_nobody_reviews_their_own_search(world: World) -> None:
    """A searcher later made a reviewer of the same unit still may not review their own search."""
    token = make_user(world.admin, world.server, "switch.user", "investigator", "north")
    r = world.admin.post(
        "/api/v1/users/switch.user/training", json={"completed_on": str(dt.date.today()), "course": "FR-101"}
    )
    assert r.status_code == 201, r.text
    with world.server.client(token) as user:
        r = _search(user, _photo("obama.jpg"), case_number="2026-0077")
        assert r.status_code == 201, r.text
        search_id = r.json()["search_id"]
        assert second_factor(world.admin, world.server, "admin").status_code == 200  # changing a role: step-up
        r = world.admin.patch("/api/v1/users/switch.user", json={"role": "reviewer"})
        assert r.status_code == 200 and r.json()["user"]["role"] == "investigator"  # a grant, pending
        with world.as_role("administrator") as second_admin:  # separation of duties: another admin approves
            approved = second_admin.post(f"/api/v1/role-grants/{r.json()['pending_grant']['id']}/approve")
        assert approved.status_code == 200 and approved.json()["status"] == "effective", approved.text
        queue = user.get("/api/v1/examinations")  # the system never assigns a searcher their own search
        assert queue.status_code == 200, queue.text
        with server_db(world.server.data_dir) as db:
            assert task_of(db, "switch.user", search_id) is None
            others = [t for t in (task_of(db, world.usernames["reviewer"], search_id),) if t]
        for other in others:  # another examiner's task is "not found" to them, like none at all
            assert user.get(f"/api/v1/examinations/{other}").status_code == 404
        view = user.get(f"/api/v1/searches/{search_id}").json()
        assert all(c["subject_external_id"] == "under review" for c in view["candidates"])
