"""Red team: learning who a candidate is before two reviewers released it, against a real server over HTTP.

An investigator runs a search; their candidates are "under review". The investigator is then made a reviewer
of the same unit (a promotion, or an administrator's favour) and opens their own search again: before the fix
the reviewer's view showed the searcher the identity, face id and thumbnail of their own unreleased
candidates. The searcher must see their own search as its searcher, whatever their role now: masked
candidates, the thumbnail refused (and audited), no decisions.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import httpx
import pytest
from live_server import (
    ADMIN_FIRST_PASSWORD,
    FR,
    PASSWORD,
    LiveServer,
    enrol_totp,
    login,
    make_user,
    second_factor,
    start_server,
    stop_server,
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = start_server(tmp_path_factory.mktemp("redteam-release") / "data")
    yield live
    stop_server(live)


@pytest.fixture(scope="module")
def admin(server: LiveServer) -> Iterator[httpx.Client]:
    client, _ = login(server, "admin", ADMIN_FIRST_PASSWORD)
    r = client.post("/api/v1/auth/password", json={"current_password": ADMIN_FIRST_PASSWORD, "new_password": PASSWORD})
    assert r.status_code == 200, r.text
    enrol_totp(client, server, "admin")  # MFA is on, as in production
    assert client.post("/api/v1/units", json={"name": "north", "agency": "Example Police"}).status_code == 201
    r = client.post("/api/v1/galleries", json={"name": "bookings", "legal_basis": "Booking", "source_system": "rms"})
    assert r.status_code == 201, r.text
    r = client.post(
        "/api/v1/galleries/bookings/enroll",
        files=[("files", ("obama.jpg", (FR / "obama.jpg").read_bytes(), "image/jpeg"))],
        data={"subject_ids": ["B-OBAMA"]},
    )
    assert r.status_code == 200, r.text
    yield client
    client.close()


def test_searcher_made_reviewer_still_sees_own_candidates_under_review(server: LiveServer, admin: httpx.Client) -> None:
    make_user(admin, server, "rt.searcher", "investigator", "north")
    auditor = server.client(make_user(admin, server, "rt.auditor", "auditor", None))
    r = admin.post("/api/v1/users/rt.searcher/training", json={"completed_on": str(dt.date.today()), "course": "FR"})
    assert r.status_code == 201, r.text
    searcher, _ = login(server, "rt.searcher", PASSWORD)
    r = searcher.post(
        "/api/v1/searches",
        files={"probe": ("probe.jpg", (FR / "obama2.jpg").read_bytes(), "image/jpeg")},
        data={
            "gallery": "bookings",
            "case_number": "RT-2026-1",
            "offense": "robbery",
            "legal_basis": "warrant",
            "justification": "suspect photo from the shop's CCTV footage",
        },
    )
    assert r.status_code == 201, r.text
    search_id = r.json()["search_id"]
    assert [c["subject_external_id"] for c in r.json()["candidates"]] == ["under review"]
    searcher.close()

    r = second_factor(admin, server, "admin")  # a fresh second factor for a role change (step-up)
    assert r.status_code == 200, r.text
    r = admin.patch("/api/v1/users/rt.searcher", json={"role": "reviewer"})
    assert r.status_code == 200, r.text
    assert admin.get("/api/v1/users/rt.searcher").json()["role"] == "reviewer", "the promotion did not take effect"
    promoted, _ = login(server, "rt.searcher", PASSWORD)
    try:
        r = promoted.get(f"/api/v1/searches/{search_id}")
        assert r.status_code == 200, r.text
        for candidate in r.json()["candidates"]:
            assert candidate["subject_external_id"] == "under review", f"own unreleased candidate named: {candidate}"
            assert not candidate["face_id"] and not candidate["subject_id"]
        assert "B-OBAMA" not in promoted.get(f"/searches/{search_id}").text, "the web page names the candidate"
        r = promoted.get(f"/api/v1/searches/{search_id}/candidates/1/thumbnail")
        assert r.status_code == 403, f"own unreleased candidate's face served: {r.status_code}"
        r = promoted.get(f"/searches/{search_id}/candidates/1/thumbnail.jpg")
        assert r.status_code == 403, f"own unreleased candidate's face served on the web: {r.status_code}"
        r = promoted.get("/api/v1/examinations")  # nobody examines their own search: never assigned it
        assert r.status_code == 200 and r.json() == [], r.text
    finally:
        promoted.close()
    r = auditor.get(
        "/api/v1/audit/records", params={"action": "search.thumbnail", "actor": "user:rt.searcher", "outcome": "denied"}
    )
    assert r.status_code == 200, r.text
    assert len(r.json()["records"]) == 2, r.json()["records"]
    auditor.close()
