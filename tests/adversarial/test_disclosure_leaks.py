"""Attacks that read what was never released: an investigator reading similarity scores of candidates still
under review, a blind reviewer learning from a count that a colleague already decided, anyone reading the
reviews of a locked emergency search (GET /searches/{id}/reviews, the packet's review_history)."""

from __future__ import annotations

from typing import Any

import pytest
from gov_world import SEARCH_FIELDS, GovWorld, conclude_as, examiners, photo

from examination_helpers import SAME, server_db
from facetrail.storage.models import SearchRecord

REVIEWERS = ("rev1", "rev2", "rev3")


@pytest.fixture(scope="module")
def search(gov_world: GovWorld) -> dict[str, Any]:
    r = gov_world.search(case_number="2026-0820")
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


def test_investigator_sees_no_score_of_a_candidate_under_review(gov_world: GovWorld, search: dict[str, Any]) -> None:
    assert search["candidates"], "the search should list candidates above the floor"
    for candidate in search["candidates"]:  # the answer to the search itself
        assert candidate["similarity"] is None and candidate["estimated_fmr"] is None
        assert candidate["subject_external_id"] == "under review" and candidate["face_id"] == 0
    with gov_world.client("inv") as investigator:
        shown = investigator.get(f"/api/v1/searches/{search['search_id']}").json()
    for candidate in shown["candidates"]:
        assert candidate["similarity"] is None and candidate["estimated_fmr"] is None
    for user in REVIEWERS:  # reviewers see no candidate before their conclusion on it (sequential unmasking)
        with gov_world.client(user) as reviewer:
            r = reviewer.get(f"/api/v1/searches/{search['search_id']}")
            assert r.status_code == 404 or r.json()["candidates"] == []  # an open examiner: not found


def test_reviews_count_does_not_tell_a_blind_reviewer(gov_world: GovWorld, search: dict[str, Any]) -> None:
    search_id = search["search_id"]
    first, second = examiners(gov_world, search_id)
    assert conclude_as(gov_world, first, search_id, 1, SAME, "same ears").status_code == 200
    with gov_world.client(second) as blind:
        detail = blind.get(f"/api/v1/searches/{search_id}")
        listed = [s for s in blind.get("/api/v1/searches").json()["items"] if s["search_id"] == search_id]
        reviews = blind.get(f"/api/v1/searches/{search_id}/reviews")
    # the second examiner's task is open: the search is not theirs to see at all
    assert detail.status_code == 404 and listed == [] and reviews.status_code == 404
    with gov_world.client("inv") as investigator:  # nothing released yet: the investigator learns nothing either
        assert investigator.get(f"/api/v1/searches/{search_id}").json()["reviews_count"] == 0
    with gov_world.client(first) as decided:
        assert decided.get(f"/api/v1/searches/{search_id}").json()["reviews_count"] == 1


def test_locked_emergency_search_serves_no_reviews(gov_world: GovWorld) -> None:
    with gov_world.client("inv") as investigator:
        r = investigator.post(
            "/api/v1/search-requests",
            files={"probe": photo("obama2.jpg")},
            data={
                **SEARCH_FIELDS,
                "case_number": "2026-0821",
                "legal_basis": "exigent-circumstances",
                "emergency": "true",
                "candidates": "5",
            },
        )
    assert r.status_code == 201, r.text
    request_id, search_id = r.json()["request"]["id"], r.json()["search"]["search_id"]
    first, second = examiners(gov_world, search_id)
    assert conclude_as(gov_world, first, search_id, 1, SAME, "scar over left eye").status_code == 200
    with gov_world.client(second) as reviewer:
        r = reviewer.post(f"/api/v1/search-requests/{request_id}/deny", json={"reason": "no exigency"})
        assert r.status_code == 200, r.text
    for user in (first, second, "aud"):
        with gov_world.client(user) as client:
            r = client.get(f"/api/v1/searches/{search_id}/reviews")
        # the examiners' tasks are open: "not found" before the lock is even asked
        assert (r.status_code, r.json()["error"]["code"]) in {(403, "results_locked"), (404, "search_not_found")}
        assert r.status_code == 403 or user != "aud", (user, r.text)
        assert "scar" not in r.text
    for user in (second, "aud"):
        with gov_world.client(user) as client:
            packet = client.get("/api/v1/cases/2026-0821/packet", params={"format": "json"})
        assert packet.status_code == 200, packet.text
        [entry] = packet.json()["searches"]
        assert entry["review_history"] == [] and entry["candidates"] == []
        assert "scar" not in packet.text
    refused = [a for a in gov_world.audit(action="review.list") if a["target"] == f"search:{search_id}"]
    assert refused and all(a["outcome"] in ("refused", "denied", "not_found") for a in refused)


def test_packets_and_the_audit_log_name_no_unreleased_candidate(gov_world: GovWorld) -> None:
    r = gov_world.search(case_number="2026-0822", candidates="3")
    assert r.status_code == 201, r.text
    search_id = r.json()["search_id"]
    panel = examiners(gov_world, search_id)
    for user in panel:  # rank 1 released; rank 2 (if shown) stays unreleased
        assert conclude_as(gov_world, user, search_id, 1, SAME).status_code == 200
    with server_db(gov_world.server.data_dir) as db, db.db.read() as s:  # the answer key
        record = s.get(SearchRecord, search_id)
        assert record is not None
        full = list(record.candidates)
    released = full[0]["subject_external_id"]
    unreleased = {c["subject_external_id"] for c in full[1:]}
    [outsider] = [u for u in REVIEWERS if u not in panel]  # a reviewer of the unit not examining it
    everyone = {"B-OBAMA", "B-BIDEN", "B-AMY"}
    never_named = (everyone - {released}) | unreleased
    faces = {str(gov_world.subject_face[s]) for s in never_named}
    for user in ("aud", outsider):
        with gov_world.client(user) as client:
            packet = client.get("/api/v1/cases/2026-0822/packet", params={"format": "json"})
        assert packet.status_code == 200, packet.text
        [entry] = packet.json()["searches"]
        named = [c["subject_external_id"] for c in entry["candidates"] if c["released"]]
        assert named == [released]
        for candidate in entry["candidates"]:
            if not candidate["released"]:
                assert candidate["face_id"] is None and candidate["similarity"] is None
                assert candidate["subject_external_id"] not in everyone
        assert not any(name in packet.text for name in never_named), "an unreleased or below-floor name leaked"
        assert all(
            c["similarity"] is None or c["similarity"] >= entry["model"]["similarity_floor"]
            for c in entry["candidates"]
        )
    # the audit log: the search record commits to its list, review records name ranks, enrolment names nobody
    records = gov_world.audit()
    search_record = [a for a in records if a["action"] == "search" and a["details"].get("search_id") == search_id]
    assert search_record and "candidates" not in search_record[0]["details"]
    assert len(search_record[0]["details"]["candidates_commitment"]) == 64
    for record in records:
        if record["action"] in ("search", "review.decide", "review.disagreement", "search.thumbnail", "enroll.batch"):
            text = str(record["details"])
            assert not any(name in text for name in never_named), record
            assert "face_id" not in record["details"] or record["action"] == "enroll.batch"
        if record["action"] == "enroll.batch":
            assert isinstance(record["details"]["subjects_created"], int)
    with gov_world.client("aud") as auditor:
        proof = auditor.get(f"/api/v1/searches/{search_id}/commitment").json()
        reviews = auditor.get(f"/api/v1/searches/{search_id}/reviews").json()
    assert proof["matches"] is True
    assert {str(r["face_id"]) for r in reviews} <= {"0", str(full[0]["face_id"])}
    assert not faces & {str(r["face_id"]) for r in reviews}
