"""Every refusal is audited, whichever door it came through (issue 8, item 5).

Each test performs a refusal against a real server (``facetrail serve`` in a subprocess, real HTTP) or the real
CLI, then reads the audit log as an auditor and fails unless the refusal left a record naming the caller, the
request and the error. Before the single refusal gate (facetrail.audit.refusals) none of these were recorded.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    start_server,
    stop_server,
)

PROBE = (FR / "obama.jpg").read_bytes()


@dataclass
class Insiders:
    server: LiveServer
    admin: httpx.Client
    tokens: dict[str, str]  # role -> API token
    usernames: dict[str, str]

    def audit(self, **filters: Any) -> list[dict[str, Any]]:
        with self.server.client(self.tokens["auditor"]) as auditor:
            r = auditor.get("/api/v1/audit/records", params={"limit": 1000, **filters})
        assert r.status_code == 200, r.text
        return list(r.json()["records"])

    def refusals_since(self, seq: int, **filters: Any) -> list[dict[str, Any]]:
        return [r for r in self.audit(**filters) if r["seq"] > seq and r["outcome"] != "ok"]

    def head(self) -> int:
        records = self.audit(limit=1)
        return int(records[0]["seq"]) if records else 0


@pytest.fixture(scope="module")
def insiders(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Insiders]:
    server = start_server(tmp_path_factory.mktemp("refusals") / "data")
    try:
        admin, _ = login(server, "admin", ADMIN_FIRST_PASSWORD)
        r = admin.post(
            "/api/v1/auth/password", json={"current_password": ADMIN_FIRST_PASSWORD, "new_password": PASSWORD}
        )
        assert r.status_code == 200, r.text
        enrol_totp(admin, server, "admin")
        assert admin.post("/api/v1/units", json={"name": "north", "agency": "Example Police"}).status_code == 201
        tokens, usernames = {}, {}
        for role, unit in (("investigator", "north"), ("reviewer", "north"), ("auditor", None)):
            usernames[role] = f"{role[:5]}.north"
            tokens[role] = make_user(admin, server, usernames[role], role, unit)
        r = admin.post(
            f"/api/v1/users/{usernames['investigator']}/training",
            json={"completed_on": str(dt.date.today()), "course": "FR-101"},
        )
        assert r.status_code == 201, r.text
        yield Insiders(server, admin, tokens, usernames)
        admin.close()
    finally:
        stop_server(server)


def _search_form(**overrides: str) -> dict[str, str]:
    fields = {
        "gallery": "bookings",
        "case_number": "C-2026-001",
        "offense": "robbery",
        "legal_basis": "warrant",
        "justification": "armed robbery, store camera",
        "candidates": "10",
    }
    fields.update(overrides)
    return {k: v for k, v in fields.items() if v != "<missing>"}


@pytest.mark.parametrize(
    ("case", "overrides", "field"),
    [
        ("missing case number", {"case_number": "<missing>"}, "case_number"),
        ("missing legal basis", {"legal_basis": "<missing>"}, "legal_basis"),
        ("missing justification", {"justification": "<missing>"}, "justification"),
        ("non-numeric candidates", {"candidates": "twenty"}, "candidates"),
        ("over-long case number", {"case_number": "C-" + "9" * 500}, "case_number"),
    ],
)
def test_api_validation_refusals_are_audited(
    insiders: Insiders, case: str, overrides: dict[str, str], field: str
) -> None:
    before = insiders.head()
    with insiders.server.client(insiders.tokens["investigator"]) as inv:
        r = inv.post(
            "/api/v1/searches", data=_search_form(**overrides), files={"probe": ("p.jpg", PROBE, "image/jpeg")}
        )
    assert r.status_code == 422, (case, r.text)
    [record] = insiders.refusals_since(before, action="request.invalid")
    assert record["actor"] == f"user:{insiders.usernames['investigator']}"
    assert record["target"] == "POST /api/v1/searches" and record["outcome"] == "refused"
    assert record["details"]["error"]["code"] == "validation_error"
    assert field in record["details"]["error"]["details"]["fields"], record
    assert "9" * 300 not in str(record["details"])  # one truncation rule: nothing typed is kept whole


def _web_session(insiders: Insiders, role: str) -> tuple[httpx.Client, str]:
    client, csrf = login(insiders.server, insiders.usernames[role], PASSWORD)
    client.headers.pop("x-csrf-token", None)  # a browser posts forms: the token travels in the form
    return client, csrf


def test_web_search_form_required_fields_refusal_is_audited(insiders: Insiders) -> None:
    client, csrf = _web_session(insiders, "investigator")
    before = insiders.head()
    try:
        r = client.post(
            "/search/new",
            data={"csrf_token": csrf, **_search_form(case_number="", justification="")},
            files={"probe": ("p.jpg", PROBE, "image/jpeg")},
            headers={"accept": "text/html"},
        )
    finally:
        client.close()
    assert r.status_code == 422 and "Required: case number, justification." in r.text
    [record] = insiders.refusals_since(before, action="request.refused")
    assert record["target"] == "POST /search/new"
    assert record["actor"] == f"user:{insiders.usernames['investigator']}"
    assert record["details"]["error"]["message"] == "Required: case number, justification."


def test_web_form_csrf_failure_is_audited(insiders: Insiders) -> None:
    client, _csrf = _web_session(insiders, "investigator")
    before = insiders.head()
    try:
        r = client.post(
            "/search/new",
            data={"csrf_token": "forged", **_search_form()},
            files={"probe": ("p.jpg", PROBE, "image/jpeg")},
            headers={"accept": "text/html"},
        )
    finally:
        client.close()
    assert r.status_code == 403
    [record] = insiders.refusals_since(before, action="access.denied")
    assert record["outcome"] == "denied" and record["target"] == "POST /search/new"
    assert record["actor"] == f"user:{insiders.usernames['investigator']}"
    assert record["details"]["error"]["code"] == "csrf_failed"


def test_revoking_another_users_token_is_audited(insiders: Insiders) -> None:
    with insiders.server.client(insiders.tokens["reviewer"]) as rev:
        [own] = [t for t in rev.get("/api/v1/auth/tokens").json() if not t["revoked"]]
    before = insiders.head()
    with insiders.server.client(insiders.tokens["investigator"]) as inv:
        r = inv.delete(f"/api/v1/auth/tokens/{own['id']}")
    assert r.status_code == 404  # another user's token is invisible, never "forbidden"
    [record] = insiders.refusals_since(before, action="token.revoke")
    assert record["outcome"] == "not_found" and record["target"] == f"token:{own['id']}"
    assert record["actor"] == f"user:{insiders.usernames['investigator']}"
    with insiders.server.client(insiders.tokens["reviewer"]) as rev:
        assert rev.get("/api/v1/auth/me").status_code == 200  # and the token still works


def _cli(insiders: Insiders, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FACETRAIL_DATA_DIR": str(insiders.server.data_dir)}
    env.pop("FACETRAIL_DATABASE_URL", None)
    return subprocess.run(
        [sys.executable, "-c", "from facetrail.cli.main import app; app()", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_cli_permission_refusal_is_audited_as_over_http(insiders: Insiders, tmp_path: Path) -> None:
    """An investigator asking the CLI for a case's disclosure packet (case.packet: reviewers and auditors)."""
    before = insiders.head()
    out = tmp_path / "packet.pdf"
    done = _cli(insiders, "case", "packet", "C-2026-001", "--out", str(out), "--token", insiders.tokens["investigator"])
    assert done.returncode == 6, done.stdout + done.stderr
    assert not out.exists()
    records = insiders.refusals_since(before, action="access.denied")
    assert len(records) == 1, (records, done.stderr)
    [record] = records
    assert record["outcome"] == "denied"
    assert record["actor"] == f"user:{insiders.usernames['investigator']}"
    assert record["target"].startswith("cli:") and "packet" in record["target"]
    assert record["details"]["error"]["code"] == "forbidden"
    assert record["details"]["via"] == "token"
