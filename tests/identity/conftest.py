"""Identity test fixtures: a real server (``facetrail serve``) with MFA on for every role and short step-up and
a step-up window of seconds (so that expiry is observed without waiting minutes), its administrator signed in with
password + TOTP, and a helper to create users who enrol their own TOTP secret."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "server"))

from live_server import (
    ADMIN_FIRST_PASSWORD,
    PASSWORD,
    LiveServer,
    enrol_totp,
    login,
    start_server,
    stop_server,
)

STEP_UP_SECONDS = 6


@dataclass
class Site:
    server: LiveServer
    admin: httpx.Client

    def user(self, username: str, role: str = "auditor", unit: str | None = None) -> tuple[httpx.Client, list[str]]:
        """A new user, signed in through the whole first sign-in: one-time password, new password, TOTP
        enrolment. Returns the session client and the recovery codes."""
        r = self.admin.post("/api/v1/users", json={"username": username, "role": role, "unit": unit})
        assert r.status_code == 201, r.text
        one_time = r.json()["one_time_password"]
        client, _ = login(self.server, username, one_time)
        r = client.post("/api/v1/auth/password", json={"current_password": one_time, "new_password": PASSWORD})
        assert r.status_code == 200, r.text
        return client, enrol_totp(client, self.server, username)


@pytest.fixture(scope="session")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    server = start_server(
        tmp_path_factory.mktemp("identity") / "data",
        {
            "FACETRAIL_MFA__STEP_UP_MINUTES": str(STEP_UP_SECONDS / 60),
        },
    )
    admin, _ = login(server, "admin", ADMIN_FIRST_PASSWORD)
    r = admin.post("/api/v1/auth/password", json={"current_password": ADMIN_FIRST_PASSWORD, "new_password": PASSWORD})
    assert r.status_code == 200, r.text
    enrol_totp(admin, server, "admin")
    assert admin.post("/api/v1/units", json={"name": "north"}).status_code == 201
    try:
        yield Site(server, admin)
    finally:
        admin.close()
        stop_server(server)
