"""TOTP second factor, recovery codes, step-up, sessions and the administrator's reset, over real HTTP against a
real server (conftest.site). Codes are computed with pyotp from the secret the enrolment returned, as an
authenticator app would; the server keeps its own clock."""

from __future__ import annotations

import time
from contextlib import closing
from typing import Any

import httpx
import pyotp
import pytest
from live_server import AUTHENTICATORS, PASSWORD, enrol_totp, second_factor, start_server, stop_server

from conftest import STEP_UP_SECONDS, Site


def _audit(site: Site, **params: Any) -> list[dict[str, Any]]:
    """Audit records, read by a fresh auditor (auditors read the log; administrators do not)."""
    if not hasattr(_audit, "client"):
        client, _ = site.user("audit.reader", "auditor")
        _audit.client = client  # type: ignore[attr-defined]
    r = _audit.client.get("/api/v1/audit/records", params={"limit": 1000, **params})  # type: ignore[attr-defined]
    assert r.status_code == 200, r.text
    return list(r.json()["records"])


def _secret(site: Site, username: str) -> str:
    return AUTHENTICATORS.secrets[(site.server.base_url, username)]


def _login(site: Site, username: str, password: str = PASSWORD) -> tuple[httpx.Client, dict[str, Any]]:
    client = site.server.client()
    r = client.post("/api/v1/auth/login", json={"username": username, "password": password})
    assert r.status_code == 200, r.text
    client.headers["x-csrf-token"] = r.json()["csrf_token"]
    return client, r.json()


def test_first_sign_in_enrols_totp_before_anything_else(site: Site) -> None:
    r = site.admin.post("/api/v1/users", json={"username": "first.user", "role": "auditor"})
    one_time = r.json()["one_time_password"]
    client, _ = _login(site, "first.user", one_time)
    with closing(client):
        assert client.post(
            "/api/v1/auth/password", json={"current_password": one_time, "new_password": PASSWORD}
        ).is_success
        r = client.get("/api/v1/audit/records")
        assert r.status_code == 401 and r.json()["error"]["code"] == "mfa_enrolment_required"
        assert client.post("/api/v1/auth/tokens", json={"name": "early"}).status_code == 401  # no token before MFA
        enrolment = client.post("/api/v1/auth/mfa/totp/enrol").json()
        assert enrolment["qr_svg"].startswith("data:image/svg+xml;base64,")
        assert enrolment["otpauth_uri"].startswith("otpauth://totp/FaceTrail:first.user?secret=")
        again = client.post("/api/v1/auth/mfa/totp/enrol").json()
        assert again["secret"] == enrolment["secret"]  # reloading the page shows the same pending secret
        wrong = client.post("/api/v1/auth/mfa/totp/confirm", json={"code": "000000"})
        assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "wrong_code"
        totp = pyotp.TOTP(enrolment["secret"])
        r = client.post("/api/v1/auth/mfa/totp/confirm", json={"code": totp.now()})
        assert r.status_code == 200, r.text
        codes = r.json()["recovery_codes"]
        assert len(codes) == 10 and len(set(codes)) == 10
        assert client.get("/api/v1/audit/records").status_code == 200  # the confirming code was the factor
        r = client.post("/api/v1/auth/mfa/totp/enrol")
        assert r.status_code == 409  # a stolen session cannot replace the owner's factor
        status = client.get("/api/v1/auth/mfa").json()
        assert status["required"] and status["totp_enrolled"] and status["recovery_codes_left"] == 10
    enrols = [x for x in _audit(site, action="mfa.enrol") if x["target"] == "user:first.user"]
    assert {x["outcome"] for x in enrols} == {"ok", "failed"}
    assert all(x["details"]["request"]["ip"] == "127.0.0.1" for x in enrols)
    assert enrolment["secret"] not in str(enrols)


def test_second_factor_at_sign_in_replay_and_clock_skew(site: Site) -> None:
    client, _codes = site.user("skew.user")
    client.close()
    secret = pyotp.TOTP(_secret(site, "skew.user"))
    used = AUTHENTICATORS.last_step[(site.server.base_url, "skew.user")]
    while int(time.time() // 30) < used + 2 or time.time() % 30 > 25:  # the previous step is unused, with time
        time.sleep(0.5)
    step = int(time.time() // 30)
    a, body = _login(site, "skew.user")
    assert body["second_factor"] == "required"
    with closing(a):
        r = a.get("/api/v1/auth/tokens")
        assert r.status_code == 401 and r.json()["error"]["code"] == "second_factor_required"
        assert (
            a.post("/api/v1/auth/mfa/verify", json={"code": secret.at((step - 2) * 30)}).status_code == 401
        )  # 60 s old
        assert a.post("/api/v1/auth/mfa/verify", json={"code": secret.at((step + 2) * 30)}).status_code == 401  # ahead
        r = a.post("/api/v1/auth/mfa/verify", json={"code": secret.at((step - 1) * 30)})  # a clock 30 s behind
        assert r.status_code == 200, r.text
        assert a.get("/api/v1/auth/tokens").status_code == 200
    b, _ = _login(site, "skew.user")
    with closing(b):
        replay = b.post("/api/v1/auth/mfa/verify", json={"code": secret.at((step - 1) * 30)})
        assert replay.status_code == 401 and replay.json()["error"]["code"] == "wrong_code"
        assert b.post("/api/v1/auth/mfa/verify", json={"code": secret.at((step + 1) * 30)}).status_code == 200  # ahead
        c, _ = _login(site, "skew.user")
        with closing(
            c
        ):  # the current step is older than the newest accepted one: refused too (codes only move forward)
            assert c.post("/api/v1/auth/mfa/verify", json={"code": secret.at(step * 30)}).status_code == 401
    AUTHENTICATORS.last_step[(site.server.base_url, "skew.user")] = step + 1
    replays = [
        x for x in _audit(site, action="auth.second_factor", outcome="failed") if x["target"] == "user:skew.user"
    ]
    assert any(x["details"].get("reason") == "code already used" for x in replays)


def test_recovery_codes_work_once(site: Site) -> None:
    client, codes = site.user("lost.phone")
    client.close()
    a, _ = _login(site, "lost.phone")
    with closing(a):
        r = a.post("/api/v1/auth/mfa/verify", json={"code": codes[0].lower()})  # case and dashes do not matter
        assert r.status_code == 200 and r.json()["factor"] == "recovery_code"
        assert r.json()["status"]["recovery_codes_left"] == 9
    b, _ = _login(site, "lost.phone")
    with closing(b):
        assert b.post("/api/v1/auth/mfa/verify", json={"code": codes[0]}).status_code == 401
        assert b.post("/api/v1/auth/mfa/verify", json={"code": codes[1].replace("-", "")}).status_code == 200


def test_wrong_codes_count_towards_lockout_and_are_audited(site: Site) -> None:
    client, _ = site.user("guesser")
    client.close()
    a, _ = _login(site, "guesser")
    with closing(a):
        outcomes = [a.post("/api/v1/auth/mfa/verify", json={"code": f"{n:06d}"}) for n in range(5)]
        assert [r.status_code for r in outcomes[:4]] == [401] * 4
        assert outcomes[4].json()["error"]["code"] == "account_locked"
        good = second_factor(a, site.server, "guesser")  # even the right code is refused while locked
        assert good.status_code == 401 and good.json()["error"]["code"] == "account_locked"
    with site.server.client() as anonymous:
        r = anonymous.post("/api/v1/auth/login", json={"username": "guesser", "password": PASSWORD})
        assert r.status_code == 401 and "locked" in r.json()["error"]["message"]
    records = [x for x in _audit(site, action="auth.second_factor") if x["target"] == "user:guesser"]
    assert [x["outcome"] for x in records].count("failed") == 4
    assert "locked" in {x["outcome"] for x in records}
    assert all(x["details"]["request"]["ip"] == "127.0.0.1" for x in records)
    site.admin.patch("/api/v1/users/guesser", json={"reset_password": True})  # unlocks (audited)


def test_step_up_for_sensitive_acts_over_the_api(site: Site) -> None:
    client, _ = site.user("step.auditor", "auditor")
    with closing(client):
        token = client.post("/api/v1/auth/tokens", json={"name": "export job", "days": 1}).json()["secret"]
        time.sleep(STEP_UP_SECONDS + 1)  # the session's sign-in factor is now too old for a sensitive act
        r = client.get("/api/v1/audit/export")
        assert r.status_code == 401 and r.json()["error"]["code"] == "step_up_required"
        assert r.json()["error"]["details"]["act"] == "exporting the audit log"
        assert client.get("/api/v1/audit/records", params={"limit": 1}).status_code == 200  # ordinary reads pass
        assert second_factor(client, site.server, "step.auditor").status_code == 200
        assert client.get("/api/v1/audit/export").status_code == 200
        time.sleep(STEP_UP_SECONDS + 1)
        assert client.get("/api/v1/audit/export").status_code == 401  # fresh means minutes, not the session
    with site.server.client(token) as machine:  # an API token steps up on its own, not through the session
        assert machine.get("/api/v1/audit/export").json()["error"]["code"] == "step_up_required"
        assert second_factor(machine, site.server, "step.auditor").status_code == 200
        assert machine.get("/api/v1/audit/export").status_code == 200
        assert machine.get("/api/v1/cases/NO-CASE/packet").status_code != 401
    required = [x for x in _audit(site, action="auth.step_up", outcome="required") if x["actor"] == "user:step.auditor"]
    assert required and required[0]["details"]["act"] == "exporting the audit log"
    assert {x["details"]["via"] for x in required} == {"session", "token"}


def test_role_change_and_subject_deletion_need_step_up(site: Site) -> None:
    client, _ = site.user("role.target", "auditor")
    client.close()
    admin, _ = _login(site, "admin")
    with closing(admin):
        assert second_factor(admin, site.server, "admin").status_code == 200
        time.sleep(STEP_UP_SECONDS + 1)
        r = admin.patch("/api/v1/users/role.target", json={"role": "administrator"})
        assert r.status_code == 401 and r.json()["error"]["code"] == "step_up_required"
        assert admin.get("/api/v1/users/role.target").json()["role"] == "auditor"  # nothing changed
        assert admin.patch("/api/v1/users/role.target", json={"disabled": False}).status_code == 200  # not sensitive
        r = admin.delete("/api/v1/galleries/none/subjects/X", params={"reason": "r"})
        assert r.json()["error"]["code"] == "step_up_required"
        assert second_factor(admin, site.server, "admin").status_code == 200
        assert admin.patch("/api/v1/users/role.target", json={"role": "administrator"}).status_code == 200


def test_administrator_resets_a_users_second_factor(site: Site) -> None:
    client, _ = site.user("reset.me", "auditor")
    old_secret = _secret(site, "reset.me")
    token = client.post("/api/v1/auth/tokens", json={"name": "t", "days": 1}).json()["secret"]
    admin, _ = _login(site, "admin")
    with closing(admin):
        assert second_factor(admin, site.server, "admin").status_code == 200
        r = admin.delete("/api/v1/users/reset.me/mfa")
        assert r.status_code == 200 and r.json() == {"ok": True}  # no secret, no code: nothing to see
    assert client.get("/api/v1/auth/me").status_code == 401  # the user's sessions ended
    client.close()
    with site.server.client(token) as machine:
        r = machine.get("/api/v1/galleries")
        assert r.status_code == 401 and r.json()["error"]["code"] == "mfa_enrolment_required"
    again, body = _login(site, "reset.me")
    with closing(again):
        assert body["second_factor"] == "enrolment_required"
        enrol_totp(again, site.server, "reset.me")  # a new secret, made by the user
        assert _secret(site, "reset.me") != old_secret
    with site.server.client(token) as machine:
        assert machine.get("/api/v1/galleries").status_code == 200
    resets = [x for x in _audit(site, action="mfa.reset") if x["target"] == "user:reset.me"]
    assert resets and resets[0]["actor"] == "user:admin" and resets[0]["details"]["had_totp"] is True


def test_sessions_are_listed_and_ended_by_their_user_and_by_administrators(site: Site) -> None:
    one, _ = site.user("many.sessions", "auditor")
    two, _ = _login(site, "many.sessions")
    assert second_factor(two, site.server, "many.sessions").status_code == 200
    other, _ = site.user("other.person", "auditor")
    with closing(one), closing(two), closing(other):
        mine = one.get("/api/v1/auth/sessions").json()
        assert len([s for s in mine if s["active"]]) == 2 and sum(s["current"] for s in mine) == 1
        assert all(s["ip"] == "127.0.0.1" and s["user"] == "many.sessions" for s in mine)
        second = next(s for s in mine if not s["current"])
        theirs = other.get("/api/v1/auth/sessions").json()[0]
        assert one.delete(f"/api/v1/auth/sessions/{theirs['id']}").status_code == 404  # not another's
        assert other.get("/api/v1/auth/me").status_code == 200
        r = one.delete(f"/api/v1/auth/sessions/{second['id']}")
        assert r.status_code == 200 and r.json()["end_reason"] == "ended by its user"
        assert two.get("/api/v1/auth/me").status_code == 401
        listed = site.admin.get("/api/v1/sessions", params={"user": "other.person"}).json()
        assert listed and all(s["user"] == "other.person" for s in listed)
        assert one.get("/api/v1/sessions").status_code == 403
        r = site.admin.delete(f"/api/v1/sessions/{theirs['id']}")
        assert r.status_code == 200 and r.json()["end_reason"] == "ended by user:admin"
        assert other.get("/api/v1/auth/me").status_code == 401
    ends = [x for x in _audit(site, action="auth.session_end") if x["details"].get("owner") == "other.person"]
    assert ends and ends[0]["actor"] == "user:admin"


@pytest.fixture(scope="module")
def short_sessions(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A server whose sessions end after 4 s idle or 12 s in all."""
    server = start_server(
        tmp_path_factory.mktemp("short-sessions") / "data",
        {"FACETRAIL_AUTH__SESSION_IDLE_MINUTES": str(4 / 60), "FACETRAIL_AUTH__SESSION_HOURS": str(12 / 3600)},
    )
    yield server
    stop_server(server)


def test_idle_timeout_and_absolute_lifetime(short_sessions: Any) -> None:
    from live_server import ADMIN_FIRST_PASSWORD, login

    client, _ = login(short_sessions, "admin", ADMIN_FIRST_PASSWORD)
    with closing(client):
        started = time.monotonic()
        while time.monotonic() - started < 9:  # active every second: the idle timeout never strikes
            assert client.get("/api/v1/auth/me").status_code == 200
            time.sleep(1)
        time.sleep(max(0.0, 13 - (time.monotonic() - started)))
        assert client.get("/api/v1/auth/me").status_code == 401  # 12 s in all, active or not
    idle, _ = login(short_sessions, "admin", ADMIN_FIRST_PASSWORD)
    with closing(idle):
        assert idle.get("/api/v1/auth/me").status_code == 200
        time.sleep(5)
        assert idle.get("/api/v1/auth/me").status_code == 401


def test_the_host_operator_resets_a_second_factor_from_the_cli(site: Site) -> None:
    """The break-glass path when every administrator has lost their factor: the CLI on the server host."""
    import os
    import subprocess
    import sys

    client, _ = site.user("cli.reset", "auditor")
    import pwd

    env = {**os.environ, "FACETRAIL_DATA_DIR": str(site.server.data_dir)}
    env.pop("FACETRAIL_DATABASE_URL", None)
    done = subprocess.run(
        [sys.executable, "-c", "from facetrail.cli.main import app; app()", "user", "reset-mfa", "cli.reset", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert '"ok": true' in done.stdout
    assert client.get("/api/v1/auth/me").status_code == 401  # sessions ended
    client.close()
    _again, body = _login(site, "cli.reset")
    _again.close()
    assert body["second_factor"] == "enrolment_required"
    resets = [x for x in _audit(site, action="mfa.reset") if x["target"] == "user:cli.reset"]
    assert resets and resets[0]["actor"] == f"cli:{pwd.getpwuid(os.getuid()).pw_name}"  # the OS user, never set
