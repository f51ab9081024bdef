"""Attack: out-vote a disagreement. One examiner concludes support for different sources, the other strong
support for the same source, and a third reviewer's conclusion used to release the lead. Now the system assigns
the two examiners; a third reviewer has no task (its task ids are "not found", audited) and the disagreement
goes to a recorded adjudication: by a reviewer the policy names (never one of the two, never the searcher), or by
the policy's rule."""

from __future__ import annotations

from typing import Any

import pytest
from gov_world import GovWorld, conclude_as, examiners, task_id

from examination_helpers import DIFFERENT, NEUTRAL, SAME

REVIEWERS = ("rev1", "rev2", "rev3")


def _third(world: GovWorld, search_id: int) -> str:
    [third] = [r for r in REVIEWERS if r not in examiners(world, search_id)]
    return third


def _adjudicate(world: GovWorld, user: str, search_id: int, rank: int, decision: str, reason: str = "ears") -> Any:
    with world.client(user) as reviewer:
        return reviewer.put(
            f"/api/v1/searches/{search_id}/candidates/{rank}/adjudication",
            json={"decision": decision, "reason": reason},
        )


def _apply_policy(world: GovWorld, **review: str) -> None:
    text = world.admin.get("/api/v1/policy").json()["text"]
    head, _, _ = text.partition("[review]")
    body = "[review]\n" + "".join(f"{k} = {v}\n" for k, v in review.items())
    r = world.admin.put("/api/v1/policy", json={"text": head + body})
    assert r.status_code in (200, 201), r.text


def _candidate(world: GovWorld, search_id: int, rank: int) -> dict[str, Any]:
    with world.client("inv") as investigator:
        shown = investigator.get(f"/api/v1/searches/{search_id}").json()
    [candidate] = [c for c in shown["candidates"] if c["rank"] == rank]
    return candidate


@pytest.fixture(scope="module")
def disagreement(gov_world: GovWorld) -> int:
    r = gov_world.search(case_number="2026-0830")
    assert r.status_code == 201, r.text
    search_id = int(r.json()["search_id"])
    first, second = examiners(gov_world, search_id)
    assert conclude_as(gov_world, first, search_id, 1, DIFFERENT).status_code == 200
    assert conclude_as(gov_world, second, search_id, 1, SAME).status_code == 200
    return search_id


def test_a_third_reviewer_cannot_outvote_a_disagreement(gov_world: GovWorld, disagreement: int) -> None:
    third = _third(gov_world, disagreement)
    assert task_id(gov_world, third, disagreement) is None  # never assigned: nothing to conclude
    first = examiners(gov_world, disagreement)[0]
    stolen = task_id(gov_world, first, disagreement)
    with gov_world.client(third) as reviewer:
        r = reviewer.get(f"/api/v1/examinations/{stolen}")
        assert r.status_code == 404 and r.json()["error"]["code"] == "examination_not_found", r.text
        assert reviewer.get(f"/api/v1/examinations/{stolen}/candidates").status_code == 404
    assert _candidate(gov_world, disagreement, 1)["subject_external_id"] == "under review"
    refused = [
        a for a in gov_world.audit(action="examination.view", outcome="not_found") if a["actor"] == f"user:{third}"
    ]
    assert refused, "the third reviewer's attempt is not audited"
    recorded = [a for a in gov_world.audit(action="review.disagreement") if a["target"] == f"search:{disagreement}"]
    assert recorded and "face_id" not in recorded[0]["details"]  # an unreleased candidate is named by rank only


def test_only_a_named_adjudicator_outside_the_panel_settles_it(gov_world: GovWorld, disagreement: int) -> None:
    third, first = _third(gov_world, disagreement), examiners(gov_world, disagreement)[0]
    r = _adjudicate(gov_world, third, disagreement, 1, "possible_lead")
    assert r.status_code == 403, r.text  # not named by the policy (yet)
    _apply_policy(gov_world, on_disagreement='"adjudicate"', adjudicators=f'["{third}", "{first}"]')
    r = _adjudicate(gov_world, first, disagreement, 1, "not_a_match")
    assert r.status_code == 403, r.text  # named, but on the panel: never judge one's own disagreement
    r = _adjudicate(gov_world, third, disagreement, 1, "possible_lead", reason="")
    assert r.status_code in (400, 422), r.text  # a reason is required
    r = _adjudicate(gov_world, third, disagreement, 1, "possible_lead", reason="scar and ear lobes agree")
    assert r.status_code == 200, r.text
    assert r.json()["adjudicator"] == third
    assert _candidate(gov_world, disagreement, 1)["subject_external_id"] != "under review"  # released
    r = _adjudicate(gov_world, third, disagreement, 1, "not_a_match")
    assert r.status_code == 409, r.text  # settled once
    adjudicated = [a for a in gov_world.audit(action="review.adjudicate") if a["target"] == f"search:{disagreement}"]
    settled = [a for a in adjudicated if a["outcome"] == "ok"]
    assert len(settled) == 1 and settled[0]["details"]["reason"] == "scar and ear lobes agree"
    assert {a["outcome"] for a in adjudicated} == {"ok", "refused", "denied"}  # every refusal audited


def test_the_policy_rule_settles_a_disagreement_as_not_released(gov_world: GovWorld) -> None:
    _apply_policy(gov_world, on_disagreement='"not_released"', adjudicators='["rev3"]')
    try:
        r = gov_world.search(case_number="2026-0831")
        assert r.status_code == 201, r.text
        search_id = int(r.json()["search_id"])
        first, second = examiners(gov_world, search_id)
        assert "rev3" not in (first, second)  # a named adjudicator is not assigned while others are free
        assert conclude_as(gov_world, first, search_id, 1, SAME).status_code == 200
        assert conclude_as(gov_world, second, search_id, 1, NEUTRAL).status_code == 200
        assert _adjudicate(gov_world, "rev3", search_id, 1, "possible_lead").status_code == 409
        assert _candidate(gov_world, search_id, 1)["subject_external_id"] == "under review"
        settled = [
            a for a in gov_world.audit(action="review.adjudicate", outcome="ok") if a["target"] == f"search:{search_id}"
        ]
        assert settled and settled[0]["actor"] == "system" and settled[0]["details"]["decision"] == "not_a_match"
    finally:
        _apply_policy(gov_world, on_disagreement='"adjudicate"', adjudicators="[]")
