"""A small real-server world for the account attacks: a fresh server, its administrator signed in (password
changed), one unit and helpers to make users and sign them in."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from live_server import ADMIN_FIRST_PASSWORD, PASSWORD, LiveServer, enrol_totp, login


@dataclass
class AuthWorld:
    server: LiveServer
    admin: httpx.Client

    def new_user(self, username: str, role: str = "investigator") -> str:
        """Create the user, set its password to PASSWORD and enrol its TOTP (first sign-in); returns the password."""
        r = self.admin.post("/api/v1/users", json={"username": username, "role": role, "unit": "north"})
        assert r.status_code == 201, r.text
        one_time = r.json()["one_time_password"]
        client, _ = login(self.server, username, one_time)
        try:
            r = client.post("/api/v1/auth/password", json={"current_password": one_time, "new_password": PASSWORD})
            assert r.status_code == 200, r.text
            enrol_totp(client, self.server, username)  # MFA is on, as in production
        finally:
            client.close()
        return PASSWORD

    def token(self, client: httpx.Client, scope: str = "full", days: int | None = None) -> str:
        body: dict[str, object] = {"name": f"adversarial {scope}", "scope": scope}
        if days is not None:
            body["days"] = days
        r = client.post("/api/v1/auth/tokens", json=body)
        assert r.status_code == 201, r.text
        return str(r.json()["secret"])


def make_world(server: LiveServer) -> AuthWorld:
    admin, _ = login(server, "admin", ADMIN_FIRST_PASSWORD)
    r = admin.post("/api/v1/auth/password", json={"current_password": ADMIN_FIRST_PASSWORD, "new_password": PASSWORD})
    assert r.status_code == 200, r.text
    enrol_totp(admin, server, "admin")
    assert admin.post("/api/v1/units", json={"name": "north", "agency": "Example Police"}).status_code == 201
    return AuthWorld(server=server, admin=admin)


def signed_in(client: httpx.Client) -> bool:
    status = client.get("/api/v1/auth/me").status_code
    assert status in (200, 401), status
    return status == 200
