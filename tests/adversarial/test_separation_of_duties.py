"""Attack: one administrator releases leads alone, by creating two reviewer accounts (their one-time passwords
come back to the administrator) or by making itself a reviewer, leaving no administrator. Separation of duties:
administrators neither search nor review; nobody changes their own role; the last administrator is neither
demoted nor disabled; a reviewer or administrator grant waits for a second administrator's approval or, with a
single administrator, for a delay during which every reviewer and auditor sees it (API and web page); grants
appear in the transparency report."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from gov_world import GovWorld, create_user, first_password, sign_up
from live_server import ADMIN_FIRST_PASSWORD, LiveServer, login, start_server, stop_server

from facetrail.policy.roles import Permission, Role, allowed


def test_administrators_hold_no_search_or_review_power() -> None:
    for permission in (Permission.SEARCH_RUN, Permission.REVIEW_DECIDE, Permission.REVIEW_ADJUDICATE):
        assert not allowed(Role.ADMINISTRATOR, permission)


def test_admin_cannot_make_itself_a_reviewer_nor_leave_no_administrator(gov_world: GovWorld) -> None:
    admin = gov_world.admin
    r = admin.patch("/api/v1/users/admin", json={"role": "reviewer", "unit": "north"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "separation_of_duties", r.text
    assert admin.get("/api/v1/users/admin").json()["role"] == "administrator"
    denied = [a for a in gov_world.audit(action="user.update", outcome="denied") if a["target"] == "user:admin"]
    assert denied and denied[-1]["details"]["error"]["code"] == "separation_of_duties"


def test_a_second_administrator_must_approve_a_reviewer(gov_world: GovWorld) -> None:
    admin, admin2 = gov_world.admin, gov_world.admin2
    assert admin2 is not None
    r = admin.post("/api/v1/users", json={"username": "sock1", "role": "reviewer", "unit": "north"})
    assert r.status_code == 201, r.text
    body = r.json()
    grant, one_time = body["pending_grant"], body["one_time_password"]
    assert grant["status"] == "pending" and grant["path"] == "second_administrator"
    assert body["user"]["disabled"] is True
    # the requesting administrator cannot sign in as the new reviewer, enable it, or approve its own grant
    assert gov_world.server.client().post(
        "/api/v1/auth/login", json={"username": "sock1", "password": one_time}
    ).status_code in (401, 403)
    r = admin.patch("/api/v1/users/sock1", json={"disabled": False})
    assert r.status_code == 403 and r.json()["error"]["code"] == "separation_of_duties", r.text
    r = admin.post(f"/api/v1/role-grants/{grant['id']}/approve")
    assert r.status_code == 403 and r.json()["error"]["code"] == "separation_of_duties", r.text
    # reviewers and auditors see the pending grant
    for user in ("rev1", "aud"):
        with gov_world.client(user) as watcher:
            pending = watcher.get("/api/v1/role-grants", params={"pending": True}).json()
        assert [g["username"] for g in pending] == ["sock1"]
    with gov_world.client("inv") as investigator:
        assert investigator.get("/api/v1/role-grants").status_code == 403
    # the second administrator approves: only now is the account usable
    r = admin2.post(f"/api/v1/role-grants/{grant['id']}/approve")
    assert r.status_code == 200 and r.json()["status"] == "effective", r.text
    client, _ = login(gov_world.server, "sock1", one_time)
    client.close()
    actions = [a["action"] for a in gov_world.audit() if a["target"] in ("user:sock1", f"grant:{grant['id']}")]
    assert {"role.grant.request", "role.grant.approve", "role.grant.effective"} <= set(actions)
    # Leave the shared world's reviewers as they were: the system draws examiners from a unit's active
    # reviewers, and later tests hold no token for sock1.
    assert admin.patch("/api/v1/users/sock1", json={"disabled": True}).status_code == 200


def test_promotion_of_an_existing_user_waits_too(gov_world: GovWorld) -> None:
    admin = gov_world.admin
    created = create_user(gov_world, "inv2", "investigator")
    r = admin.patch("/api/v1/users/inv2", json={"role": "reviewer"})
    assert r.status_code == 200, r.text
    assert r.json()["user"]["role"] == "investigator" and r.json()["pending_grant"]["role"] == "reviewer"
    r = admin.post(f"/api/v1/role-grants/{r.json()['pending_grant']['id']}/cancel", json={"reason": "typo"})
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert admin.get("/api/v1/users/inv2").json()["role"] == "investigator"
    assert created["pending_grant"] is None


def test_last_administrator_cannot_be_demoted_or_disabled(gov_world: GovWorld) -> None:
    admin2 = gov_world.admin2
    assert admin2 is not None
    # two administrators: admin2 may disable admin … but then admin is the last one and may not be touched
    r = admin2.patch("/api/v1/users/admin", json={"disabled": True})
    assert r.status_code == 200, r.text
    try:
        r = gov_world.admin.get("/api/v1/users")  # admin's session ended with the change
        assert r.status_code == 401
        r = admin2.patch("/api/v1/users/admin2", json={"role": "auditor"})
        assert r.status_code == 403 and r.json()["error"]["code"] == "separation_of_duties"
    finally:
        r = admin2.patch("/api/v1/users/admin", json={"disabled": False})
        assert r.status_code == 200, r.text
        gov_world.admin.close()
        gov_world.admin, _ = login(gov_world.server, "admin", _admin_password())


def _admin_password() -> str:
    from live_server import PASSWORD

    return PASSWORD


# ------------------------------------------------------------------ a single administrator: the delay path


@pytest.fixture(scope="module")
def lone_admin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, httpx.Client]]:
    """A fresh server with one administrator and the default delay (72 h)."""
    server = start_server(
        tmp_path_factory.mktemp("lone") / "data",
        {"FACETRAIL_GOVERNANCE__ROLE_GRANT_DELAY_HOURS": "72", "FACETRAIL_MFA__REQUIRED_ROLES": "[]"},
    )
    try:
        admin, _ = login(server, "admin", ADMIN_FIRST_PASSWORD)
        first_password(admin, ADMIN_FIRST_PASSWORD)
        assert admin.post("/api/v1/units", json={"name": "north", "agency": "x"}).status_code == 201
        yield server, admin
        admin.close()
    finally:
        stop_server(server)


def test_a_lone_administrator_waits_out_a_visible_delay(lone_admin: tuple[LiveServer, httpx.Client]) -> None:
    server, admin = lone_admin
    world = GovWorld(server=server, admin=admin)
    world.tokens["aud"] = sign_up(world, "aud", create_user(world, "aud", "auditor", None)["one_time_password"])
    bodies: list[dict[str, Any]] = []
    for name in ("puppet1", "puppet2"):
        r = admin.post("/api/v1/users", json={"username": name, "role": "reviewer", "unit": "north"})
        assert r.status_code == 201, r.text
        bodies.append(r.json())
    for body in bodies:
        grant = body["pending_grant"]
        assert grant["path"] == "delay" and body["user"]["disabled"] is True
        after = dt.datetime.fromisoformat(grant["effective_after"])
        assert after - dt.datetime.fromisoformat(grant["requested_at"]) >= dt.timedelta(hours=71)
        # the administrator cannot sign in as the puppet before the delay has passed
        r = server.client().post(
            "/api/v1/auth/login", json={"username": body["user"]["username"], "password": body["one_time_password"]}
        )
        assert r.status_code in (401, 403)
    with world.client("aud") as auditor:
        assert {g["username"] for g in auditor.get("/api/v1/role-grants", params={"pending": True}).json()} == {
            "puppet1",
            "puppet2",
        }
        today = dt.date.today()
        report = auditor.get(
            "/api/v1/reports/transparency",
            params={"from": str(today - dt.timedelta(days=1)), "to": str(today + dt.timedelta(days=1))},
        )
    assert report.status_code == 200, report.text
    assert "puppet1" in report.text and "role_grants" in report.text
    # the web UI shows the pending grants to the auditor on every page
    client, _ = login(server, "aud", "Correct-horse-battery-9")
    try:
        page = client.get("/searches")
        assert page.status_code == 200 and 'data-testid="pending-grants"' in page.text and "puppet2" in page.text
    finally:
        client.close()
