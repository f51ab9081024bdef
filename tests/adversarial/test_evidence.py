"""Red team: evidence integrity of an examination (issue 15), against a real server over HTTP and real SQL.

Attacks by insiders, each expected to fail (and be audited), or — where FaceTrail cannot stop it — to leave an
accountable record, said plainly:
- enhance someone else's examination (the other examiner's task, another unit's, an investigator's attempt);
- ask for an operation that adds content (inpainting, upscaling) or hide one in the parameters;
- tamper with the enhancement log in the database to make a different image pass as the logged one;
- swap the original probe file on disk (same name = same hash) and derive from it;
- delete an original or an enhancement through the API (there is no such route);
- search an edited probe honestly declared "edited": refused by the default policy, and audited;
- smuggle an edited probe declared "original": NOT detectable — FaceTrail cannot tell a retouched photo from an
  original, and does not pretend to. The test documents the limit: the search runs, and the false declaration
  is on record under the searcher's name (docs/examination.md, "Limits").
"""

from __future__ import annotations

import io
import sqlite3
from collections.abc import Iterator
from typing import Any

import cv2
import numpy as np
import pytest
from gov_world import SEARCH_FIELDS, GovWorld, close_world, make_gov_world, photo
from live_server import start_server, stop_server

from facetrail.examination import fiswg

QUALITY = {factor: {"rating": "good", "comment": ""} for factor in fiswg.QUALITY_FACTORS}
STEP = {"image": "probe", "operation": "brightness", "parameters": {"delta": 25}, "purpose": "eyes in shadow"}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GovWorld]:
    server = start_server(
        tmp_path_factory.mktemp("evidence") / "data",
        {"FACETRAIL_MFA__REQUIRED_ROLES": "[]", "FACETRAIL_KEEP_PROBE_IMAGES": "true"},
    )
    try:
        gov = make_gov_world(server)
        yield gov
        close_world(gov)
    finally:
        stop_server(server)


@pytest.fixture(scope="module")
def examined(world: GovWorld) -> dict[str, Any]:
    """A search by the investigator; its two examiners (assigned by the system) and their tasks."""
    r = world.search()
    assert r.status_code == 201, r.text
    search_id = r.json()["search_id"]
    tasks: dict[str, str] = {}
    for name in ("rev1", "rev2", "rev3"):
        with world.client(name) as client:
            r = client.get("/api/v1/examinations")
            assert r.status_code == 200, r.text
            mine = [t["task_id"] for t in r.json()]
        if mine:
            tasks[name] = mine[0]
    assert len(tasks) == 2, tasks  # two examiners; the third reviewer has none
    outsider = next(n for n in ("rev1", "rev2", "rev3") if n not in tasks)
    first, second = sorted(tasks)
    with world.client(first) as client:
        r = client.post(
            f"/api/v1/examinations/{tasks[first]}/probe-analysis", json={"quality": QUALITY, "suitable": True}
        )
        assert r.status_code in (200, 201), r.text
        r = client.post(f"/api/v1/examinations/{tasks[first]}/enhancements", json=STEP)
        assert r.status_code == 201, r.text
        step = r.json()
    return {
        "search_id": search_id,
        "tasks": tasks,
        "first": first,
        "second": second,
        "outsider": outsider,
        "step": step,
    }


def _audited(world: GovWorld, action: str, outcome: str) -> list[dict[str, Any]]:
    return world.audit(action=action, outcome=outcome)


def test_nobody_but_the_examiner_enhances_the_task(world: GovWorld, examined: dict[str, Any]) -> None:
    task = examined["tasks"][examined["first"]]
    for name, status in ((examined["second"], 404), (examined["outsider"], 404), ("inv", 403), ("aud", 403)):
        with world.client(name) as client:
            r = client.post(f"/api/v1/examinations/{task}/enhancements", json=STEP)
            assert r.status_code == status, (name, r.text)
            r = client.get(f"/api/v1/examinations/{task}/enhancements/{examined['step']['sha256']}/image")
            assert r.status_code == status, (name, r.text)
    actors = {rec["actor"] for rec in _audited(world, "enhancement.create", "not_found")}
    assert {f"user:{examined['second']}", f"user:{examined['outsider']}"} <= actors
    assert "user:inv" in {rec["actor"] for rec in _audited(world, "enhancement.create", "denied")}


@pytest.mark.parametrize(
    "body",
    [
        {**STEP, "operation": "inpaint"},
        {**STEP, "operation": "upscale", "parameters": {"factor": 4}},
        {**STEP, "operation": "super_resolution"},
        {**STEP, "parameters": {"delta": 25, "paint": [[0, 0, 255]]}},  # content smuggled in a parameter
        {**STEP, "operation": "rotation", "parameters": {"degrees": 7}},  # interpolation: not offered
    ],
)
def test_operations_that_add_content_are_refused(
    world: GovWorld, examined: dict[str, Any], body: dict[str, Any]
) -> None:
    with world.client(examined["first"]) as client:
        r = client.post(f"/api/v1/examinations/{examined['tasks'][examined['first']]}/enhancements", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "enhancement_invalid"
    codes = {rec["details"]["error"]["code"] for rec in _audited(world, "enhancement.create", "refused")}
    assert "enhancement_invalid" in codes


def test_no_route_deletes_or_rewrites_an_original_or_an_enhancement(world: GovWorld, examined: dict[str, Any]) -> None:
    task, sha = examined["tasks"][examined["first"]], examined["step"]["sha256"]
    with world.client(examined["first"]) as client:
        for method in ("DELETE", "PUT", "PATCH"):
            for path in (
                f"/api/v1/examinations/{task}/enhancements/{sha}/image",
                f"/api/v1/examinations/{task}/enhancements",
                f"/api/v1/examinations/{task}/probe/image",
            ):
                assert client.request(method, path).status_code == 405, (method, path)
        r = client.get(f"/api/v1/examinations/{task}/enhancements/{sha}/replay")
        assert r.status_code == 200 and r.json()["identical"], r.text


def test_a_tampered_log_is_caught_by_replay(world: GovWorld, examined: dict[str, Any]) -> None:
    """Rewrite the logged step in the database (as a DBA could) to claim a milder enhancement."""
    task = examined["tasks"][examined["first"]]
    with world.client(examined["first"]) as client:
        r = client.post(
            f"/api/v1/examinations/{task}/enhancements", json={**STEP, "parameters": {"delta": 80}, "purpose": "strong"}
        )
        assert r.status_code == 201, r.text
        strong = r.json()
        with sqlite3.connect(world.server.data_dir / "facetrail.db") as db:
            db.execute(
                "UPDATE image_enhancements SET steps = ?, parameters = ? WHERE id = ?",
                ('[{"operation": "brightness", "parameters": {"delta": 5}}]', '{"delta": 5}', strong["id"]),
            )
        r = client.get(f"/api/v1/examinations/{task}/enhancements/{strong['sha256']}/replay")
    assert r.status_code == 200, r.text
    assert r.json()["identical"] is False and r.json()["replayed_sha256"] != strong["sha256"]
    failed = _audited(world, "enhancement.replay", "failed")
    assert strong["sha256"] in {rec["details"]["sha256"] for rec in failed}
    # and the creation's audit record, in the hash-chained log, still says what was really done
    created = [
        rec
        for rec in _audited(world, "enhancement.create", "ok")
        if rec["details"]["result_sha256"] == strong["sha256"]
    ]
    assert created[0]["details"]["parameters"] == {"delta": 80}


def test_a_parent_outside_the_chain_is_refused(world: GovWorld, examined: dict[str, Any]) -> None:
    """A derived image can only descend from the original through logged steps."""
    import hashlib

    foreign = hashlib.sha256(photo("biden.jpg")[1]).hexdigest()
    with world.client(examined["first"]) as client:
        r = client.post(
            f"/api/v1/examinations/{examined['tasks'][examined['first']]}/enhancements",
            json={**STEP, "parent_sha256": foreign},
        )
    assert r.status_code == 404 and r.json()["error"]["code"] == "enhancement_not_found", r.text


def test_a_swapped_original_is_refused_not_enhanced(world: GovWorld, examined: dict[str, Any]) -> None:
    task = examined["tasks"][examined["first"]]
    sha = examined["step"]["original_sha256"]
    path = world.server.data_dir / "probes" / sha[:2] / sha[2:4] / sha
    saved = path.read_bytes()
    try:
        path.write_bytes(photo("biden.jpg")[1])  # another face under the probe's name (= its hash)
        with world.client(examined["first"]) as client:
            r = client.post(f"/api/v1/examinations/{task}/enhancements", json=STEP)
            assert r.status_code == 409 and r.json()["error"]["code"] == "original_altered", r.text
            r = client.get(f"/api/v1/examinations/{task}/enhancements/{examined['step']['sha256']}/replay")
            assert r.status_code == 409, r.text
    finally:
        path.write_bytes(saved)
    codes = {rec["details"]["error"]["code"] for rec in _audited(world, "enhancement.create", "refused")}
    assert "original_altered" in codes


def _edited(name: str) -> tuple[str, bytes, str]:
    """The probe with a painted patch on the cheek: an edited photo."""
    pixels = cv2.imdecode(np.frombuffer(photo(name)[1], dtype=np.uint8), cv2.IMREAD_COLOR)
    h, w = pixels.shape[:2]
    pixels[int(h * 0.55) : int(h * 0.62), int(w * 0.3) : int(w * 0.37)] = (40, 60, 90)
    ok, data = cv2.imencode(".jpg", pixels)
    assert ok
    return ("edited.jpg", io.BytesIO(data.tobytes()).getvalue(), "image/jpeg")


def test_an_honestly_declared_edited_probe_is_refused_and_audited(world: GovWorld) -> None:
    with world.client("inv") as client:
        r = client.post(
            "/api/v1/searches",
            files={"probe": _edited("obama2.jpg")},
            data={**SEARCH_FIELDS, "probe_declaration": "edited"},
        )
    assert r.status_code == 400 and r.json()["error"]["code"] == "probe_declaration_refused", r.text
    refused = [
        rec
        for rec in _audited(world, "search", "refused")
        if rec["details"]["error"]["code"] == "probe_declaration_refused"
    ]
    assert refused and refused[0]["actor"] == "user:inv"


def test_an_edited_probe_declared_original_is_not_detectable_but_is_on_record(world: GovWorld) -> None:
    """The limit, stated: a false declaration cannot be detected. What remains is accountability: the search ran
    under the searcher's name with the declaration 'original' in its hash-chained audit record, and its probe
    (kept) can be examined — and enhanced only through the logged, non-creative operations."""
    with world.client("inv") as client:
        r = client.post(
            "/api/v1/searches",
            files={"probe": _edited("obama2.jpg")},
            data={**SEARCH_FIELDS, "probe_declaration": "original"},
        )
    assert r.status_code == 201, r.text  # accepted: FaceTrail cannot know the photo was edited
    body = r.json()
    assert body["probe"]["declaration"] == "original"
    record = [rec for rec in _audited(world, "search", "ok") if rec["details"]["search_id"] == body["search_id"]]
    assert record[0]["actor"] == "user:inv" and record[0]["details"]["probe_declaration"] == "original"
    assert record[0]["details"]["probe_sha256"] == body["probe"]["sha256"]
