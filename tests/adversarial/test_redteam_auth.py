"""Red team: guessing passwords and forging cross-site form posts, against a real server over HTTP.

- Whoever holds a signed-in session (a stolen cookie, an unlocked workstation) guesses the account's password
  through the password-change form: every wrong ``current_password`` must count toward the lockout and the
  address throttle like a failed sign-in, and be audited (before the fix: unlimited guesses, none audited,
  because the audit record was rolled back with the refusal).
- A cross-site page posts a FaceTrail web form with the victim's cookie but without the form's CSRF token: it
  must be refused and the refusal audited (before the fix: refused, but no audit record).
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from auth_world import AuthWorld, make_world
from live_server import PASSWORD, LiveServer, enrol_totp, login, start_server, stop_server

MAX_FAILED_LOGINS = 5  # auth.max_failed_logins, the default


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = start_server(tmp_path_factory.mktemp("redteam-auth") / "data")
    yield live
    stop_server(live)


@pytest.fixture(scope="module")
def world(server: LiveServer) -> Iterator[AuthWorld]:
    w = make_world(server)
    yield w
    w.admin.close()


@pytest.fixture(scope="module")
def auditor(world: AuthWorld) -> Iterator[httpx.Client]:
    r = world.admin.post("/api/v1/users", json={"username": "rt.auditor", "role": "auditor"})
    assert r.status_code == 201, r.text
    one_time = r.json()["one_time_password"]
    client, _ = login(world.server, "rt.auditor", one_time)
    r = client.post("/api/v1/auth/password", json={"current_password": one_time, "new_password": PASSWORD})
    assert r.status_code == 200, r.text
    enrol_totp(client, world.server, "rt.auditor")  # MFA is on, as in production
    yield client
    client.close()


def records(auditor: httpx.Client, **params: str) -> list[dict[str, object]]:
    r = auditor.get("/api/v1/audit/records", params={"limit": "200", **params})
    assert r.status_code == 200, r.text
    return list(r.json()["records"])


def test_password_change_form_is_no_unlimited_password_oracle(world: AuthWorld, auditor: httpx.Client) -> None:
    world.new_user("rt.guessed")
    stolen, _ = login(world.server, "rt.guessed", PASSWORD)  # the attacker's stolen session
    try:
        answers = []
        for i in range(MAX_FAILED_LOGINS + 3):
            r = stolen.post(
                "/api/v1/auth/password",
                json={"current_password": f"Guess-number-{i}-x", "new_password": "Another-horse-battery-7"},
            )
            answers.append(r.status_code)
        assert set(answers) <= {401, 429}, answers
        # the guesses locked the account like failed sign-ins would: now even the right password is refused
        r = stolen.post(
            "/api/v1/auth/password", json={"current_password": PASSWORD, "new_password": "Another-horse-battery-7"}
        )
        assert r.status_code in (401, 429), f"guessing through the password form never locks: {r.text}"
        r = httpx.post(
            f"{world.server.base_url}/api/v1/auth/login", json={"username": "rt.guessed", "password": PASSWORD}
        )
        assert r.status_code == 401, "the account was not locked by the guesses"
    finally:
        stolen.close()
    guesses = [
        rec
        for rec in records(auditor, action="user.password_change")
        if rec["target"] == "user:rt.guessed" and rec["outcome"] != "ok"
    ]
    assert len(guesses) >= MAX_FAILED_LOGINS, f"wrong current passwords are not audited: {guesses}"
    assert any(rec["outcome"] == "locked" for rec in guesses)


def test_forged_web_form_post_is_refused_and_audited(world: AuthWorld, auditor: httpx.Client) -> None:
    world.new_user("rt.victim")
    victim, _ = login(world.server, "rt.victim", PASSWORD)
    try:
        for forged in ({}, {"csrf_token": "not-the-token"}):
            r = victim.post("/tokens", data={"name": "made by a forged page", **forged}, follow_redirects=False)
            assert r.status_code == 403, r.text
            assert r.json()["error"]["code"] == "csrf_failed"
        assert victim.get("/api/v1/auth/tokens").json() == [], "the forged form made a token"
    finally:
        victim.close()
    denied = [
        rec
        for rec in records(auditor, action="access.denied", actor="user:rt.victim")
        if rec["target"] == "POST /tokens"
    ]
    assert len(denied) == 2, f"forged form posts are not audited: {denied}"
    assert all(rec["outcome"] == "denied" for rec in denied)


def test_forged_sign_in_form_is_refused_and_audited(world: AuthWorld, auditor: httpx.Client) -> None:
    """Login CSRF: a cross-site page signs the victim's browser into the attacker's account (whatever the
    victim then types, the attacker reads). The sign-in form without its token is refused, and audited."""
    with httpx.Client(base_url=world.server.base_url, timeout=60) as browser:
        r = browser.post("/login", data={"username": "admin", "password": PASSWORD, "csrf_token": "forged"})
        assert r.status_code == 400, r.text
        assert "facetrail_session" not in browser.cookies, "the forged sign-in opened a session"
    denied = [rec for rec in records(auditor, action="access.denied") if rec["target"] == "POST /login"]
    assert len(denied) == 1, denied
    assert denied[0]["outcome"] == "denied" and denied[0]["details"]["username"] == "admin"
