"""Candidate lists of subjects, not faces (issue 11), over HTTP against a real server: a subject enrolled with
several photos appears once, shown by its best face, with its faces expandable for those who may see them."""

from __future__ import annotations

from typing import Any

import cv2
import httpx
import pytest
from live_server import FR, World
from sqlalchemy import select

from examination_helpers import NEUTRAL, conclude_over_api, server_db
from facetrail.storage.models import SearchRecord

GALLERY = "multi-photo"
FIELDS = {
    "gallery": GALLERY,
    "case_number": "2026-0911",
    "offense": "robbery",
    "legal_basis": "warrant",
    "justification": "CCTV still; the gallery holds several booking photos per person",
}


def _jpeg(image: Any) -> bytes:
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 92])
    assert ok
    return data.tobytes()


@pytest.fixture(scope="module")
def search(world: World) -> dict[str, Any]:
    """Three booking photos of one man (the photo, its mirror image, a smaller copy), one of another; the
    investigator searches with a different photo of the first."""
    r = world.admin.post(
        "/api/v1/galleries",
        json={"name": GALLERY, "legal_basis": "Booking photos, statute 12-3", "source_system": "county-rms"},
    )
    assert r.status_code == 201, r.text
    photo = cv2.imread(str(FR / "obama.jpg"))
    copies = {
        "obama.jpg": (FR / "obama.jpg").read_bytes(),
        "obama-mirror.jpg": _jpeg(cv2.flip(photo, 1)),
        "obama-small.jpg": _jpeg(cv2.resize(photo, None, fx=0.75, fy=0.75, interpolation=cv2.INTER_AREA)),
        "biden.jpg": (FR / "biden.jpg").read_bytes(),
    }
    r = world.admin.post(
        f"/api/v1/galleries/{GALLERY}/enroll",
        files=[("files", (name, data, "image/jpeg")) for name, data in copies.items()],
        data={"subject_ids": ["M-OBAMA", "M-OBAMA", "M-OBAMA", "M-BIDEN"]},
    )
    assert r.status_code == 200, r.text
    assert [f["status"] for f in r.json()["files"]] == ["enrolled"] * 4
    faces = [f["face_id"] for f in r.json()["files"]]
    with world.as_role("investigator") as investigator:
        r = investigator.post(
            "/api/v1/searches",
            files={"probe": ("obama2.jpg", (FR / "obama2.jpg").read_bytes(), "image/jpeg")},
            data={**FIELDS, "candidates": "5"},
        )
    assert r.status_code == 201, r.text
    search_id = r.json()["search_id"]
    with world.stepped_up("reviewer") as reviewer:
        before = reviewer.get(f"/api/v1/searches/{search_id}").json()["candidates"]
        with server_db(world.server.data_dir) as db:  # the reviewer concludes on rank 1: then it is shown to them
            concluded = conclude_over_api(reviewer, db, world.usernames["reviewer"], search_id, 1, NEUTRAL, "3 photos")
        assert concluded.status_code == 200, concluded.text
    return {"result": r.json(), "obama_faces": faces[:3], "biden_face": faces[3], "before": before}


def _audit(world: World, action: str) -> list[dict[str, Any]]:
    with world.as_role("auditor") as auditor:
        r = auditor.get("/api/v1/audit/records", params={"limit": 1000, "action": action})
    assert r.status_code == 200, r.text
    records: list[dict[str, Any]] = r.json()["records"]
    return records


def test_a_subject_with_several_photos_appears_once_with_its_faces(world: World, search: dict[str, Any]) -> None:
    search_id = search["result"]["search_id"]
    with server_db(world.server.data_dir) as db, db.db.read() as session:
        stored = session.execute(select(SearchRecord).where(SearchRecord.id == search_id)).scalar_one().candidates
    subjects = [c["subject_external_id"] for c in stored]
    assert subjects[0] == "M-OBAMA" and subjects.count("M-OBAMA") == 1  # once, not once per photo
    assert len(subjects) == len(set(subjects)) == 2  # the list counts subjects: two people enrolled
    assert search["before"] == []  # sequential unmasking: nothing before the reviewer's conclusion
    with world.as_role("reviewer") as reviewer:
        detail = reviewer.get(f"/api/v1/searches/{search_id}").json()
    candidates = detail["candidates"]
    assert [c["subject_external_id"] for c in candidates] == ["M-OBAMA"]  # the one concluded on
    top = candidates[0]
    assert top["faces_enrolled"] == 3 and top["score_rule"] == "max"
    assert sorted(f["face_id"] for f in top["faces"]) == sorted(search["obama_faces"])
    scores = [f["similarity"] for f in top["faces"]]
    assert scores == sorted(scores, reverse=True) and top["face_id"] == top["faces"][0]["face_id"]
    assert top["similarity"] == pytest.approx(scores[0], abs=1e-5)  # max rule: the best face's score
    assert top["faces_above_floor"] == sum(s >= detail["similarity_floor"] for s in scores)
    # the subject-level FMR: three photos, three chances for a stranger to score this high
    assert top["estimated_fmr"] > 0
    with world.as_role("reviewer") as reviewer:
        for face in top["faces"]:
            thumb = reviewer.get(face["thumbnail_url"])
            assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
            assert thumb.content[:2] == b"\xff\xd8"
        # a face of another subject is not this candidate's: not found (and audited so)
        refused = reviewer.get(
            f"/api/v1/searches/{search_id}/candidates/1/thumbnail", params={"face_id": search["biden_face"]}
        )
        assert refused.status_code == 404
    views = [r for r in _audit(world, "search.thumbnail") if r["target"] == f"search:{search_id}"]
    assert views and all("face_id" not in r["details"] for r in views)  # by rank and place, never by face id
    assert {r["details"].get("face") for r in views if r["outcome"] == "ok"} >= {1, 2, 3}


def test_the_investigator_sees_no_faces_of_a_candidate_under_review(world: World, search: dict[str, Any]) -> None:
    search_id = search["result"]["search_id"]
    first = search["result"]["candidates"][0]  # the search response is the investigator's view
    assert first["subject_external_id"] == "under review" and first["similarity"] is None
    assert first["faces"] == [] and first["faces_enrolled"] is None and first["faces_above_floor"] is None
    with world.as_role("investigator") as investigator:
        r = investigator.get(
            f"/api/v1/searches/{search_id}/candidates/1/thumbnail", params={"face_id": search["obama_faces"][1]}
        )
    assert r.status_code == 403


def test_face_id_of_the_expansion_is_checked(world: World, search: dict[str, Any]) -> None:
    search_id = search["result"]["search_id"]
    with world.as_role("reviewer") as reviewer:
        for bad in ("0", "-1", "x", str(2**31)):
            r: httpx.Response = reviewer.get(
                f"/api/v1/searches/{search_id}/candidates/1/thumbnail", params={"face_id": bad}
            )
            assert r.status_code == 422, (bad, r.text)
        r = reviewer.get(f"/api/v1/searches/{search_id}/candidates/1/thumbnail", params={"face_id": 2**31 - 1})
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
