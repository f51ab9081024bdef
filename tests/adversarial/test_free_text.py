"""Attack: hide what is recorded behind control characters (NUL, RLO and other bidi controls, zero-width
characters, line breaks in single-line fields), or open a look-alike case ("А-2026-001" with a Cyrillic А)
that escapes the real case's packet. Every free-text field refuses them with a clear error
(code control_character / case_number_invalid), and refused searches and decisions are audited."""

from __future__ import annotations

from typing import Any

import pytest
from gov_world import SEARCH_FIELDS, GovWorld, conclude_as, examiners, photo

from examination_helpers import ALL_SIMILAR, QUALITY, examiners_of, handle_for, server_db, task_of

NASTY = {
    "nul": "seen at\x00 the bank",
    "rlo": "not a match \u202ehctam a si\u202c",
    "isolate": "fine \u2066hidden\u2069",
    "zero_width": "B-OB\u200bAMA",
    "escape": "ok\x1b[2J",
    "line_separator": "first\u2028second",
}


def _error(r: Any) -> dict[str, Any]:
    body: dict[str, Any] = r.json()
    return body["error"]


@pytest.fixture(scope="module")
def search_id(gov_world: GovWorld) -> int:
    r = gov_world.search(case_number="2026-0801")
    assert r.status_code == 201, r.text
    return int(r.json()["search_id"])


def _open_task(gov_world: GovWorld, user: str, search_id: int) -> tuple[str, str]:
    """The examiner's task on the search, its probe analysed, and the handle of the candidate at rank 1."""
    with server_db(gov_world.server.data_dir) as db:
        examiners_of(db, search_id)
        task = task_of(db, user, search_id)
        assert task is not None
        with gov_world.client(user) as reviewer:
            base = f"/api/v1/examinations/{task}"
            if reviewer.get(base).json()["probe_analysis"] is None:
                r = reviewer.post(f"{base}/probe-analysis", json={"quality": QUALITY, "suitable": True})
                assert r.status_code == 200, r.text
        return task, handle_for(db, task, 1)


@pytest.mark.parametrize("kind", sorted(NASTY))
def test_conclusion_and_checklist_text_refuse_control_characters(
    gov_world: GovWorld, search_id: int, kind: str
) -> None:
    user = examiners(gov_world, search_id)[0]
    task, handle = _open_task(gov_world, user, search_id)
    base = f"/api/v1/examinations/{task}/candidates/{handle}"
    with gov_world.client(user) as reviewer:
        r = reviewer.put(
            f"{base}/checklist", json={"marks": {"eyes": {"iris": {"mark": "similar", "comment": NASTY[kind]}}}}
        )
        assert r.status_code in (400, 422), r.text
        assert _error(r)["code"] == "control_character"
        r = reviewer.put(f"{base}/checklist", json={"marks": ALL_SIMILAR})
        assert r.status_code == 200, r.text
        for field in ("reasoning", "limitations"):
            body = {"conclusion": "neutral", "reasoning": "r", "limitations": "l", field: NASTY[kind]}
            r = reviewer.post(f"{base}/conclusion", json=body)
            assert r.status_code in (400, 422), r.text
            assert _error(r)["code"] == "control_character"
            assert f"{field} contains a control character" in _error(r)["message"]
        assert reviewer.get(f"{base}").json()["conclusion"] is None  # nothing stored
    refused = [
        a for a in gov_world.audit(action="examination.conclude", outcome="refused") if a["actor"] == f"user:{user}"
    ]
    assert refused and refused[0]["details"]["error"]["code"] == "control_character"
    assert gov_world.audit(action="examination.checklist", outcome="refused")


def test_multiline_reasoning_keeps_line_breaks(gov_world: GovWorld, search_id: int) -> None:
    user = examiners(gov_world, search_id)[1]
    r = conclude_as(gov_world, user, search_id, 1, "limited_support_different_sources", "ear shape differs\r\nchin too")
    assert r.status_code == 200, r.text
    assert r.json()["reasoning"] == "ear shape differs\nchin too"


@pytest.mark.parametrize("field", ["justification", "offense", "case_number"])
def test_search_fields_refuse_newlines_and_bidi(gov_world: GovWorld, field: str) -> None:
    for value in ("2026-0802\nrobbery", "2026\u202e-0802"):
        r = gov_world.search(**{field: value})
        assert r.status_code in (400, 422), r.text
        assert _error(r)["code"] in ("control_character", "offense_not_allowed", "case_number_invalid")


def test_lookalike_case_number_is_refused_and_audited(gov_world: GovWorld) -> None:
    cyrillic = "\u0410-2026-001"  # "А-2026-001": Cyrillic capital A
    r = gov_world.search(case_number=cyrillic)
    assert r.status_code in (400, 422), r.text
    assert _error(r)["code"] == "case_number_invalid"
    refused = [
        a
        for a in gov_world.audit(action="search", outcome="refused")
        if (a["details"].get("error") or {}).get("code") == "case_number_invalid"
    ]
    assert refused, "the look-alike case number refusal is not audited"


def test_fullwidth_case_number_is_the_same_case(gov_world: GovWorld) -> None:
    fullwidth = "\uff12\uff10\uff12\uff16-0803"  # "２０２６-0803": full-width digits
    r = gov_world.search(case_number=fullwidth)
    assert r.status_code == 201, r.text
    assert r.json()["case_number"] == "2026-0803"  # NFKC: recorded under the case it looks like
    with gov_world.client("inv") as investigator:
        items = investigator.get("/api/v1/searches", params={"case_number": "2026-0803"}).json()["items"]
    assert [s["search_id"] for s in items] == [r.json()["search_id"]]


def test_emergency_and_request_fields_refuse_control_characters(gov_world: GovWorld) -> None:
    with gov_world.client("inv") as investigator:
        r = investigator.post(
            "/api/v1/search-requests",
            files={"probe": photo("obama2.jpg")},
            data={**SEARCH_FIELDS, "offense": "burglary", "justification": "suspect\u202e seen"},
        )
    assert r.status_code in (400, 422), r.text
    assert _error(r)["code"] == "control_character"


def test_approval_reasons_refuse_control_characters(gov_world: GovWorld) -> None:
    with gov_world.client("inv") as investigator:
        r = investigator.post(
            "/api/v1/search-requests",
            files={"probe": photo("obama2.jpg")},
            data={**SEARCH_FIELDS, "offense": "burglary", "case_number": "2026-0804"},
        )
    assert r.status_code == 201, r.text
    request_id = r.json()["request"]["id"]
    with gov_world.client("rev1") as reviewer:
        r = reviewer.post(f"/api/v1/search-requests/{request_id}/deny", json={"reason": "no\x00 basis"})
        assert r.status_code in (400, 422), r.text
        assert _error(r)["code"] == "control_character"
        r = reviewer.post(f"/api/v1/search-requests/{request_id}/approve", json={"reason": "ok \u202e"})
        assert r.status_code in (400, 422), r.text
        assert reviewer.get("/api/v1/search-requests").json()[0]["status"] == "pending"


def test_administrative_free_text_refuses_control_characters(gov_world: GovWorld) -> None:
    admin = gov_world.admin
    r = admin.post("/api/v1/units", json={"name": "south\u202e", "agency": "x"})
    assert r.status_code in (400, 422) and _error(r)["code"] == "control_character", r.text
    r = admin.post("/api/v1/users", json={"username": "eve", "role": "auditor", "display_name": "Eve\x00 Admin"})
    assert r.status_code in (400, 422) and _error(r)["code"] == "control_character", r.text
    r = admin.post(
        "/api/v1/galleries",
        json={"name": "g\u200b2", "legal_basis": "statute", "source_system": "rms"},
    )
    assert r.status_code in (400, 422) and _error(r)["code"] == "control_character", r.text
    r = admin.post("/api/v1/users/inv/training", json={"completed_on": "2026-01-01", "course": "FR\u2066-101"})
    assert r.status_code in (400, 422) and _error(r)["code"] == "control_character", r.text
