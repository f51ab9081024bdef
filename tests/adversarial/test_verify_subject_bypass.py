"""Attack: `facetrail verify-subject` as a way around two-person review and the similarity floor. It used to
print the exact similarity and face id of a candidate the investigator still saw as "under review", the score
of a subject below the floor, and `subject_not_found` for an unknown subject (enumeration), and it left no
search record and no review. Now a 1:1 check is a search: the same gate, recorded, reviewed, and nothing is
revealed until two reviewers release it; an unknown, a below-floor and an above-floor subject answer alike.
The CLI runs for real (a subprocess) against the live server's data folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest
from gov_world import GovWorld, conclude_as, examiners
from live_server import FR

from examination_helpers import SAME

CASE = "2026-0840"


def _verify(world: GovWorld, subject: str, user: str = "inv", **override: str) -> subprocess.CompletedProcess[str]:
    args = {
        "--gallery": "bookings",
        "--subject": subject,
        "--case": CASE,
        "--offense": "robbery",
        "--legal-basis": "warrant",
        "--reason": "suspect named by a witness",
        **override,
    }
    env = {
        **os.environ,
        "FACETRAIL_DATA_DIR": str(world.server.data_dir),
        "FACETRAIL_EMBEDDING__ONNX_THREADS": "1",
        "FACETRAIL_API_TOKEN": world.tokens[user],
    }
    env.pop("FACETRAIL_DATABASE_URL", None)
    cmd = [sys.executable, "-c", "from facetrail.cli.main import app; app()", "verify-subject", str(FR / "obama2.jpg")]
    for key, value in args.items():
        cmd += [key, value]
    return subprocess.run([*cmd, "--json"], capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture(scope="module")
def checks(gov_world: GovWorld) -> dict[str, dict[str, Any]]:
    out = {}
    for subject in ("B-OBAMA", "B-AMY", "B-NOBODY"):  # above the floor, below it, unknown
        done = _verify(gov_world, subject)
        assert done.returncode == 0, done.stdout + done.stderr
        out[subject] = json.loads(done.stdout)
    return out


def test_nothing_is_revealed_and_all_subjects_answer_alike(checks: dict[str, dict[str, Any]]) -> None:
    answers = [{k: v for k, v in body.items() if k != "search_id"} for body in checks.values()]
    assert answers[0] == answers[1] == answers[2], answers
    text = json.dumps(answers[0])
    assert 'similarity": 0' not in text and "face_id" not in text and "subject_not_found" not in text
    assert answers[0]["released_leads"] == []


def test_each_check_is_a_recorded_search_for_review(gov_world: GovWorld, checks: dict[str, dict[str, Any]]) -> None:
    ids = {subject: body["search_id"] for subject, body in checks.items()}
    with gov_world.client("inv") as investigator:
        listed = {
            s["search_id"]: s
            for s in investigator.get("/api/v1/searches", params={"case_number": CASE}).json()["items"]
        }
        views = {subject: investigator.get(f"/api/v1/searches/{i}").json() for subject, i in ids.items()}
    assert set(ids.values()) <= set(listed)
    for view in views.values():  # the searcher's view: no candidate, no count, until released
        assert view["candidates"] == [] and view["candidates_shown"] == 0
    panel = examiners(gov_world, ids["B-OBAMA"])  # reviewers examine it: the system assigns two
    assert len(panel) == 2 and examiners(gov_world, ids["B-NOBODY"]) == []  # nothing shown, nothing to examine
    with gov_world.client(panel[0]) as reviewer:
        above = reviewer.get(f"/api/v1/searches/{ids['B-OBAMA']}")
    assert above.status_code == 404  # not even to a reviewer before their task is complete: not found
    searches = [a for a in gov_world.audit(action="search") if a["details"].get("search_id") in ids.values()]
    assert len(searches) == 3
    for record in searches:  # the log commits to the named subject and the result, never names them
        assert "B-OBAMA" not in json.dumps(record) and "B-AMY" not in json.dumps(record)
        assert record["details"]["kind"] == "verify_subject" and len(record["details"]["subject_commitment"]) == 64
    with gov_world.client("aud") as auditor:
        for search_id in ids.values():
            proof = auditor.get(f"/api/v1/searches/{search_id}/commitment").json()
            assert proof["committed"] is True and proof["matches"] is True, proof


def test_released_only_after_two_reviewers(gov_world: GovWorld, checks: dict[str, dict[str, Any]]) -> None:
    search_id = checks["B-OBAMA"]["search_id"]
    for user in examiners(gov_world, search_id):
        r = conclude_as(gov_world, user, search_id, 1, SAME)
        assert r.status_code == 200, r.text
    with gov_world.client("inv") as investigator:
        view = investigator.get(f"/api/v1/searches/{search_id}").json()
    assert [c["subject_external_id"] for c in view["candidates"]] == ["B-OBAMA"]
    assert view["candidates"][0]["similarity"] is not None


@pytest.mark.parametrize(
    ("override", "code"),
    [
        ({"--case": "\u0410-2026-001"}, "case_number_invalid"),
        ({"--offense": "jaywalking"}, "offense_not_allowed"),
        ({"--legal-basis": "hunch"}, "bad_input"),
        ({"--offense": "burglary"}, "approval_required"),
    ],
)
def test_the_search_gate_applies(gov_world: GovWorld, override: dict[str, str], code: str) -> None:
    done = _verify(gov_world, "B-OBAMA", **override)
    assert done.returncode != 0
    assert json.loads(done.stdout)["error"]["code"] == code, done.stdout


def test_an_untrained_investigator_is_refused(gov_world: GovWorld) -> None:
    from gov_world import create_user, sign_up

    created = create_user(gov_world, "untrained", "investigator")
    gov_world.tokens["untrained"] = sign_up(gov_world, "untrained", created["one_time_password"])
    done = _verify(gov_world, "B-OBAMA", user="untrained")
    assert done.returncode != 0 and json.loads(done.stdout)["error"]["code"] == "training_required", done.stdout
    refused = [a for a in gov_world.audit(action="search", outcome="refused") if a["actor"] == "user:untrained"]
    assert refused
