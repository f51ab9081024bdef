"""Helpers for the server tests: a real FaceTrail server (``facetrail serve`` in a subprocess, on a free port,
with a temporary data directory), sign-in, and the populated "world" shared by the server tests. Requests go
over real HTTP with httpx."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import httpx

from server_process import ServerProcess
from server_process import free_port as free_port  # re-exported: the server tests import them from here
from server_process import start_server as start_server_process
from server_process import stop_server as stop_server

FIXTURES = Path(__file__).parent.parent / "fixtures"
FR = FIXTURES / "face_recognition"
ADMIN_FIRST_PASSWORD = "first-Start-password-1"
PASSWORD = "Correct-horse-battery-9"
ROLES = ("investigator", "reviewer", "auditor", "administrator")


LiveServer = ServerProcess


def start_server(data_dir: Path, env_extra: dict[str, str] | None = None) -> LiveServer:
    env = {"FACETRAIL_ADMIN_PASSWORD": ADMIN_FIRST_PASSWORD, "FACETRAIL_EMBEDDING__ONNX_THREADS": "1"}
    return start_server_process(data_dir, {**env, **(env_extra or {})})


def login(server: LiveServer, username: str, password: str) -> tuple[httpx.Client, str]:
    """A browser-like client: session cookie plus the CSRF token it must send on changes."""
    client = server.client()
    r = client.post("/api/v1/auth/login", json={"username": username, "password": password})
    assert r.status_code == 200, r.text
    csrf = r.json()["csrf_token"]
    client.headers["x-csrf-token"] = csrf
    return client, csrf


@dataclass
class World:
    server: LiveServer
    admin: httpx.Client  # session + CSRF
    tokens: dict[str, str] = field(default_factory=dict)  # "investigator", ..., "investigator_south" -> bearer
    usernames: dict[str, str] = field(default_factory=dict)
    gallery: str = "bookings"
    subject_face: dict[str, int] = field(default_factory=dict)  # external id -> face id

    def as_role(self, role: str) -> httpx.Client:
        return self.server.client(self.tokens[role])


def make_user(admin: httpx.Client, server: LiveServer, username: str, role: str, unit: str | None) -> str:
    """Create the user, change its one-time password, and return an API token for it."""
    r = admin.post("/api/v1/users", json={"username": username, "role": role, "unit": unit})
    assert r.status_code == 201, r.text
    one_time = r.json()["one_time_password"]
    client, _ = login(server, username, one_time)
    try:
        r = client.post("/api/v1/auth/password", json={"current_password": one_time, "new_password": PASSWORD})
        assert r.status_code == 200, r.text
        r = client.post("/api/v1/auth/tokens", json={"name": f"{username} tests", "days": 1, "scope": "full"})
        assert r.status_code == 201, r.text
        return str(r.json()["secret"])
    finally:
        client.close()
